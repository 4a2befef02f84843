"""The in-memory data set type and the checks the trainer runs before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from backflip._errors import BackflipTypeError, BackflipValueError

if TYPE_CHECKING:
    from backflip.data._files import ImageFolder

__all__ = ["ArrayDataset", "check_batch_size", "check_compatible", "check_dataset"]


def _arrays_origin() -> dict[str, Any]:
    return {"form": "arrays"}


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Samples and (optionally) labels as NumPy arrays.

    ``x`` is float32: images ``(N, C, H, W)`` in ``[0, 1]`` or vectors ``(N, D)``;
    ``y`` is int64 ``(N,)`` with labels in ``[0, num_classes)``, or ``None`` for an
    unlabelled set (a target domain, never scored). ``num_classes=None`` with integer
    labels is inferred as ``int(y.max()) + 1``; bad labels are left for
    :func:`check_dataset` to report. ``attrs`` holds optional per-sample attributes
    (e.g. ``attrs["digits"]`` of composite-zero); ``origin`` records where the data
    came from (``{"form": "arrays"}``, ``"npz"``, ``"csv"``, ``"folder"``, ``"builtin"``
    with a ``"path"`` or ``"name"``). Instances compare by identity.

    >>> ds = ArrayDataset(np.zeros((2, 3), np.float32), np.array([0, 1]), 2, "toy")
    >>> len(ds), ds.x.shape, ds.labelled
    (2, (2, 3), True)
    >>> ArrayDataset(np.zeros((4, 3), np.float32), np.array([0, 2, 1, 2])).num_classes
    3
    >>> ArrayDataset(np.zeros((4, 3), np.float32), name="target")
    ArrayDataset(name='target', n=4, x=float32(4, 3), unlabelled)
    """

    x: np.ndarray
    y: np.ndarray | None = None
    num_classes: int | None = None
    name: str = "arrays"
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=_arrays_origin)

    def __post_init__(self) -> None:
        if self.num_classes is None and self.y is not None:
            y = np.asarray(self.y)
            if y.size and np.issubdtype(y.dtype, np.integer):
                object.__setattr__(self, "num_classes", int(y.max()) + 1)

    @property
    def labelled(self) -> bool:
        """Whether the set has labels (``y is not None``)."""
        return self.y is not None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        labels = f"num_classes={self.num_classes}" if self.labelled else "unlabelled"
        return (f"ArrayDataset(name={self.name!r}, n={len(self)}, x={self.x.dtype}"
                f"{tuple(self.x.shape)}, {labels})")


def _sample_shape(ds: ArrayDataset | ImageFolder) -> tuple[int, ...]:
    return tuple(ds.x.shape[1:]) if isinstance(ds, ArrayDataset) else tuple(ds.shape)


def _shape(ds: ArrayDataset | ImageFolder) -> str:
    return "x".join(str(n) for n in _sample_shape(ds))


def _check_layout(ds: ArrayDataset, role: str) -> None:
    """x must be (N, D) vectors or (N, C, H, W) images; name the fix for the usual others."""
    x = ds.x
    head = f"the {role} data set {ds.name!r} has x of shape {tuple(x.shape)}"
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise BackflipValueError(
            f"{head}, which looks channels-last (N, H, W, C); backflip takes images as "
            "(N, C, H, W). Pass x.transpose(0, 3, 1, 2) (NumPy)."
        )
    if x.ndim == 3:
        raise BackflipValueError(
            f"{head}: images (N, H, W) without a channel axis; backflip takes images as "
            "(N, C, H, W). Pass x[:, None] (adds C=1)."
        )
    if x.ndim not in (2, 4):
        hint = " If each sample is one number, pass x[:, None]." if x.ndim == 1 else ""
        raise BackflipValueError(
            f"{head}; x must be (N, D) vectors or (N, C, H, W) images.{hint}"
        )


def _check_finite(ds: ArrayDataset, role: str) -> None:
    x = ds.x
    # A float64 sum of finite float32 values cannot overflow: one pass, no mask, when clean.
    if np.isfinite(x.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    if count == 0:
        return
    first = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
    raise BackflipValueError(
        f"the {role} data set {ds.name!r} has {count} non-finite values (NaN or inf), the "
        f"first in sample {first}; drop or impute those samples before training (e.g. "
        "keep = np.isfinite(x).all(axis=tuple(range(1, x.ndim))), then x[keep], y[keep])."
    )


def _why_labels(role: str) -> str:
    if role == "target":
        return ("method target-only trains on target labels: pass a labelled target or use "
                "method dann, which needs no target labels")
    if "test" in role:
        return "a test set is scored against its labels: pass a labelled one"
    return f"the {role} domain trains the classifier on its labels: pass y"


def _no_labels(ds: ArrayDataset, role: str) -> BackflipValueError:
    origin = ds.origin or {}
    form, path = origin.get("form"), origin.get("path")
    where = ""
    if form == "csv":
        columns = origin.get("columns") or []
        shown = ", ".join(map(str, columns[:12])) + (", ..." if len(columns) > 12 else "")
        where = (f" It was read from {path}, which has no column "
                 f"{origin.get('label_column', 'label')!r} (columns: {shown}); name the label "
                 "column with label_column= (CLI --label-column NAME).")
    elif form == "npz":
        where = (f" It was read from {path}, which has no key 'y'; save the labels with it: "
                 "np.savez(path, x=x, y=y).")
    elif form == "npy":
        where = (f" It was read from {path}; a .npy holds x only, so save x and y together "
                 "in an .npz: np.savez(path, x=x, y=y).")
    return BackflipValueError(
        f"the {role} data set {ds.name!r} has no labels; {_why_labels(role)}.{where}"
    )


def _check_label_dtype(y: np.ndarray, ds: ArrayDataset, role: str) -> None:
    if np.issubdtype(y.dtype, np.integer):
        return
    head = f"labels of the {role} data set {ds.name!r} must be integers; got {y.dtype}"
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (y == np.round(y))
        if whole.all():
            raise BackflipTypeError(f"{head}. They are all whole numbers: pass y.astype(np.int64).")
        i = int(np.flatnonzero(~whole)[0])
        raise BackflipTypeError(
            f"{head} with non-integral values (e.g. {y[i]} at index {i}); they look like "
            "regression targets or probabilities, which classification cannot take. Pass one "
            "integer class in 0..num_classes-1 per sample."
        )
    if y.dtype == np.bool_:
        raise BackflipTypeError(f"{head}. Pass y.astype(np.int64) (False -> 0, True -> 1).")
    if y.dtype.kind in "USO":
        raise BackflipTypeError(
            f"{head}. Map class names to integers, e.g. classes, y = np.unique(y, "
            "return_inverse=True)."
        )
    raise BackflipTypeError(f"{head}. Pass y.astype(np.int64).")


def check_dataset(ds: ArrayDataset | ImageFolder, role: str = "source", *,
                  labels: bool = True) -> ArrayDataset | ImageFolder:
    """Check a data set before training; returns it unchanged.

    In this order: ``x`` is ``(N, D)`` vectors or ``(N, C, H, W)`` images (a
    channels-last or channel-less layout gets its fix), non-empty, float32, free of
    NaN and inf; ``y`` (if any) has one entry per sample; and where ``labels``, ``y``
    exists and every label is an integer in ``[0, num_classes)`` (1-based labels are
    recognised). ``role`` (e.g. ``"target"``) names the data set in the message. An
    :class:`~backflip.data.ImageFolder` is checked when it is built (always labelled,
    never empty) and passes through.

    >>> check_dataset(ArrayDataset(np.zeros((1, 2), np.float32), np.array([3]), 2, "toy"))
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: labels of the source data set 'toy' must lie in [0, 2); got 3 at index 0. Remap the labels to 0..num_classes-1 or raise num_classes.
    """
    if not isinstance(ds, ArrayDataset):
        from backflip.data._files import ImageFolder

        if isinstance(ds, ImageFolder):
            return ds
        raise BackflipTypeError(
            f"the {role} data set must be a backflip.data.ArrayDataset; got "
            f"{type(ds).__name__}. Load one with backflip.data.load(name) or "
            "backflip.data.open_dataset(path), or wrap arrays in ArrayDataset(x, y)."
        )
    if not isinstance(ds.x, np.ndarray):
        raise BackflipTypeError(
            f"the {role} data set {ds.name!r} has x of type {type(ds.x).__name__}; x must be "
            "a NumPy array. Pass np.asarray(x, np.float32)."
        )
    _check_layout(ds, role)
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
    _check_finite(ds, role)
    if ds.y is None:
        if labels:
            raise _no_labels(ds, role)
        return ds
    y = np.asarray(ds.y)
    if y.shape != (len(ds),):
        onehot = (" If y is one-hot or per-class scores, pass y.argmax(axis=1)."
                  if y.ndim == 2 and len(y) == len(ds) else "")
        raise BackflipValueError(
            f"the {role} data set {ds.name!r} has {len(ds)} samples but labels of shape "
            f"{y.shape}; y must be a 1-d array with one label per sample.{onehot}"
        )
    if not labels:
        return ds
    _check_label_dtype(y, ds, role)
    k = ds.num_classes
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BackflipValueError(
            f"the {role} data set {ds.name!r} has num_classes {k!r}; it must be an int >= 1 "
            "(or None to infer it as y.max() + 1)."
        )
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        if y.min() == 1 and y.max() == k:
            raise BackflipValueError(
                f"labels of the {role} data set {ds.name!r} look 1-based: they run from 1 to "
                f"{k} but must lie in [0, {k}). Pass y - 1."
            )
        i = int(bad[0])
        raise BackflipValueError(
            f"labels of the {role} data set {ds.name!r} must lie in [0, "
            f"{k}); got {y[i]} at index {i}. Remap the labels to "
            "0..num_classes-1 or raise num_classes."
        )
    return ds


def check_compatible(source: ArrayDataset | ImageFolder, target: ArrayDataset | ImageFolder) -> None:
    """Check two domains can share one network: same sample shape and classes.

    Classes are compared only where both sides know them (an unlabelled target has
    ``num_classes=None``); where both record class names (a CSV with named labels, a
    folder), the names must match too, since they fix which index means which class.

    >>> a = ArrayDataset(np.zeros((1, 1, 4, 4), np.float32), np.zeros(1, np.int64), 10, "a")
    >>> b = ArrayDataset(np.zeros((1, 3, 4, 4), np.float32), np.zeros(1, np.int64), 10, "b")
    >>> check_compatible(a, b)
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: source 'a' samples are 1x4x4 but target 'b' samples are 3x4x4: they have different channels. Apply backflip.data.to_rgb to the source (CLI: --source-transform rgb) so both have 3 channels, or backflip.data.to_grey to the target (CLI: --target-transform grey) so both have 1.
    """
    sx, tx = _sample_shape(source), _sample_shape(target)
    if sx != tx:
        if len(sx) == 1 and len(tx) == 1:
            raise BackflipValueError(
                f"source {source.name!r} has {sx[0]} features per sample but target "
                f"{target.name!r} has {tx[0]}; both domains need the same features (same "
                "columns in the same order)."
            )
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
    if source.num_classes is None or target.num_classes is None:
        return
    if source.num_classes != target.num_classes:
        raise BackflipValueError(
            f"source {source.name!r} has {source.num_classes} classes but target "
            f"{target.name!r} has {target.num_classes}; both domains need the same classes."
        )
    s_names = (source.origin or {}).get("classes")
    t_names = (target.origin or {}).get("classes")
    if s_names is not None and t_names is not None and list(s_names) != list(t_names):
        raise BackflipValueError(
            f"source {source.name!r} has the classes {list(s_names)} but target "
            f"{target.name!r} has {list(t_names)}; class names are numbered in sorted order, "
            "so both domains need the same names for label i to mean the same class."
        )


def _held_count(left: int, fraction: float) -> int | None:
    """The ``round(n * fraction)`` held out of the ``n`` that left ``left``; None if ambiguous."""
    found = [v for v in range(int(left * fraction / (1.0 - fraction)) + 3)
             if v == round((left + v) * fraction)]
    return found[0] if len(found) == 1 else None


def check_batch_size(ds: ArrayDataset | ImageFolder, batch_size: int, role: str = "source",
                     held_out: float = 0.0) -> int:
    """Check ``1 <= batch_size <= len(ds)``; returns ``batch_size``.

    ``ds`` is what the batches are drawn from: for the source, the part left after the
    validation hold-out. ``held_out`` is the share that was held out (``val_fraction``,
    the trainer holds out ``round(n * val_fraction)``); the message then says so.

    >>> ds = ArrayDataset(np.zeros((54, 2), np.float32), np.zeros(54, np.int64), 2, "foo")
    >>> check_batch_size(ds, 54, held_out=0.1)
    54
    >>> check_batch_size(ds, 64, held_out=0.1)
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: batch_size 64 is larger than the source data set 'foo' (54 samples after holding out 10% (6) for validation, val_fraction 0.1). Use --batch-size 54 or less, a smaller --val-fraction, or more data (raise --limit).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise BackflipTypeError(f"batch_size must be an int; got {batch_size!r}.")
    if batch_size < 1:
        raise BackflipValueError(f"batch_size must be >= 1; got {batch_size}.")
    if (isinstance(held_out, bool) or not isinstance(held_out, int | float | np.number)
            or not 0.0 <= held_out < 1.0):
        raise BackflipValueError(
            f"held_out must be a fraction in [0, 1); got {held_out!r}. Use 0.1 to hold out "
            "10% for validation, or 0 for none."
        )
    n = len(ds)
    if batch_size > n:
        if held_out > 0:
            count = _held_count(n, float(held_out))
            size = (f"{n} samples after holding out {held_out * 100:g}%"
                    f"{'' if count is None else f' ({count})'} for validation, val_fraction "
                    f"{held_out:g}")
            more = "a smaller --val-fraction, or more data (raise --limit)"
        else:
            size, more = f"{n} samples", "or more data (raise --limit)"
        raise BackflipValueError(
            f"batch_size {batch_size} is larger than the {role} data set {ds.name!r} "
            f"({size}). Use --batch-size {n} or less, {more}."
        )
    return int(batch_size)
