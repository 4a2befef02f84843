"""``uci-digits``: scikit-learn's embedded 8x8 handwritten digits (``load_digits``).

Data: E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten Digits* (UCI
Machine Learning Repository, 1998), CC BY 4.0; scikit-learn (BSD-3-Clause) ships its
test part, 1,797 digits of 8x8 blocks counting ink pixels (0..16) of 32x32 bitmaps.
Nothing to fetch: it loads from the installed scikit-learn, imported only here.

Images ``(N, 1, 8, 8)`` float32, value / 16, white on black; a fixed split (a quarter
of each class to test, see :func:`~backflip.data._splits.fixed_split`): 1,348 / 449.
"""

from __future__ import annotations

import numpy as np

from backflip._optional import require
from backflip.data._dataset import ArrayDataset
from backflip.data._splits import fixed_split

__all__ = ["load_uci_digits"]

_TEST_SHARE = 0.25


def load_uci_digits(split: str, limit: int | None = None) -> ArrayDataset:
    """The fixed ``split`` of ``uci-digits`` as ``(N, 1, 8, 8)`` float32 in [0, 1], labels 0..9.

    >>> ds = load_uci_digits("test", limit=3)
    >>> ds.x.shape, float(ds.x.max()), len(load_uci_digits("train")), len(load_uci_digits("test"))
    ((3, 1, 8, 8), 1.0, 1348, 449)
    """
    bunch = require("sklearn.datasets", purpose="the uci-digits data set").load_digits()
    y = np.asarray(bunch.target, np.int64)
    idx = fixed_split(y, round(len(y) * _TEST_SHARE), "uci-digits")[split][:limit]
    images = np.asarray(bunch.images, np.float32)[idx, None] / np.float32(16.0)
    return ArrayDataset(images, y[idx], 10, "uci-digits")
