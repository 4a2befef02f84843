"""The in-memory data set type and the checks the trainer runs before any work."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = ["ArrayDataset", "check_batch_size", "check_compatible", "check_dataset"]


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Samples and labels as NumPy arrays.

    ``x`` is float32: images ``(N, C, H, W)`` in ``[0, 1]`` or vectors ``(N, D)``;
    ``y`` is int64 ``(N,)`` with labels in ``[0, num_classes)``; ``attrs`` holds
    optional per-sample attributes (e.g. ``attrs["digits"]`` of composite-zero).
    Instances compare by identity (arrays have no single truth value).

    >>> ds = ArrayDataset(np.zeros((2, 3), np.float32), np.array([0, 1]), 2, "toy")
    >>> len(ds), ds.x.shape
    (2, (2, 3))
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"ArrayDataset(name={self.name!r}, n={len(self)}, x={self.x.dtype}"
                f"{tuple(self.x.shape)}, num_classes={self.num_classes})")


def _shape(ds: ArrayDataset) -> str:
    return "x".join(str(n) for n in ds.x.shape[1:])


def check_dataset(ds: ArrayDataset, role: str = "source", *, labels: bool = True) -> ArrayDataset:
    """Check a data set before training; returns it unchanged.

    It must be non-empty, ``x`` float32, ``x`` and ``y`` of the same length, and (where
    ``labels``) every label an integer in ``[0, num_classes)``. ``role`` (e.g.
    ``"target"``) names the data set in the message.

    >>> check_dataset(ArrayDataset(np.zeros((1, 2), np.float32), np.array([3]), 2, "toy"))
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: labels of the source data set 'toy' must lie in [0, 2); got 3 at index 0. Remap the labels to 0..num_classes-1 or raise num_classes.
    """
    if not isinstance(ds, ArrayDataset):
        raise BackflipTypeError(
            f"the {role} data set must be a backflip.data.ArrayDataset; got "
            f"{type(ds).__name__}. Load one with backflip.data.load(name) or wrap arrays "
            "in ArrayDataset(x, y, num_classes, name)."
        )
    if len(ds) == 0:
        raise BackflipValueError(
            f"the {role} data set {ds.name!r} is empty (0 samples). Check its split, "
            "`limit` and path; training needs at least one batch from each domain."
        )
    if ds.x.dtype != np.float32:
        raise BackflipTypeError(
            f"the {role} data set {ds.name!r} has x of dtype {ds.x.dtype}; the networks "
            "take float32 (images scaled to [0, 1]). Pass x.astype(np.float32)"
            + (" / 255" if np.issubdtype(ds.x.dtype, np.integer) else "") + "."
        )
    if labels and not np.issubdtype(ds.y.dtype, np.integer):
        raise BackflipTypeError(
            f"the {role} data set {ds.name!r} has labels of dtype {ds.y.dtype}; class "
            "labels must be integers. Pass y.astype(np.int64)."
        )
    if ds.y.shape != (len(ds),):
        raise BackflipValueError(
            f"the {role} data set {ds.name!r} has {len(ds)} samples but labels of shape "
            f"{ds.y.shape}; y must be a 1-d array with one label per sample."
        )
    if labels and ds.y.size:
        bad = np.flatnonzero((ds.y < 0) | (ds.y >= ds.num_classes))
        if bad.size:
            i = int(bad[0])
            raise BackflipValueError(
                f"labels of the {role} data set {ds.name!r} must lie in [0, "
                f"{ds.num_classes}); got {ds.y[i]} at index {i}. Remap the labels to "
                "0..num_classes-1 or raise num_classes."
            )
    return ds


def check_compatible(source: ArrayDataset, target: ArrayDataset) -> None:
    """Check two domains can share one network: same sample shape and classes.

    >>> a = ArrayDataset(np.zeros((1, 1, 4, 4), np.float32), np.zeros(1, np.int64), 10, "a")
    >>> b = ArrayDataset(np.zeros((1, 3, 4, 4), np.float32), np.zeros(1, np.int64), 10, "b")
    >>> check_compatible(a, b)
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: source 'a' samples are 1x4x4 but target 'b' samples are 3x4x4: they have different channels. Apply backflip.data.to_rgb to the source (CLI: --source-transform rgb) so both have 3 channels, or backflip.data.to_grey to the target (CLI: --target-transform grey) so both have 1.
    """
    sx, tx = source.x.shape[1:], target.x.shape[1:]
    if sx != tx:
        head = (f"source {source.name!r} samples are {_shape(source)} but target "
                f"{target.name!r} samples are {_shape(target)}")
        if len(sx) == 3 and len(tx) == 3 and sx[0] != tx[0]:
            fix_side = "source" if sx[0] < tx[0] else "target"
            other = "target" if fix_side == "source" else "source"
            raise BackflipValueError(
                f"{head}: they have different channels. Apply backflip.data.to_rgb to the "
                f"{fix_side} (CLI: --{fix_side}-transform rgb) so both have 3 channels, or "
                f"backflip.data.to_grey to the {other} (CLI: --{other}-transform grey) so "
                "both have 1."
            )
        if len(sx) == 3 and len(tx) == 3:
            size = max(sx[1], tx[1])
            raise BackflipValueError(
                f"{head}: they have different image sizes. Apply "
                f"backflip.data.resize(ds, {size}) to the smaller one (CLI: "
                f"--source-transform/--target-transform resize{size})."
            )
        raise BackflipValueError(f"{head}; both domains must share one sample shape.")
    if source.num_classes != target.num_classes:
        raise BackflipValueError(
            f"source {source.name!r} has {source.num_classes} classes but target "
            f"{target.name!r} has {target.num_classes}; both domains need the same classes."
        )


def check_batch_size(ds: ArrayDataset, batch_size: int, role: str = "source") -> int:
    """Check ``1 <= batch_size <= len(ds)``; returns ``batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise BackflipTypeError(f"batch_size must be an int; got {batch_size!r}.")
    if batch_size < 1:
        raise BackflipValueError(f"batch_size must be >= 1; got {batch_size}.")
    if batch_size > len(ds):
        raise BackflipValueError(
            f"batch_size {batch_size} is larger than the {role} data set {ds.name!r} "
            f"({len(ds)} samples). Use --batch-size {len(ds)} or less, or more data "
            "(raise --limit)."
        )
    return int(batch_size)
