"""MNIST-M-style images: ``|colour patch - digit|`` with patches of photos shipped in
scikit-image and scikit-learn (the original used BSDS500, which is not available offline)."""

from __future__ import annotations

import functools

import numpy as np

from backflip._optional import require

__all__ = ["PHOTOS", "blend_mnistm", "photos"]

#: (package, name) of the colour photographs patches are cut from.
PHOTOS = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"),
    ("skimage", "immunohistochemistry"), ("skimage", "rocket"),
    ("skimage", "stereo_motorcycle"),  # its left and right views
    ("sklearn", "china"), ("sklearn", "flower"),
)
_SPLIT_CODE = {"train": 0, "test": 1}


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """The colour photographs, uint8 (H, W, 3); all load offline from the installed packages."""
    skimage_data = require("skimage.data", purpose="the mnistm data set")
    sklearn_datasets = require("sklearn.datasets", purpose="the mnistm data set")
    require("PIL", purpose="the mnistm data set")  # load_sample_images reads JPEGs with it

    out: list[np.ndarray] = []
    for package, name in PHOTOS:
        if package == "skimage":
            img = getattr(skimage_data, name)()
            out.extend(img[:2] if isinstance(img, tuple) else [img])
    out.extend(sklearn_datasets.load_sample_images().images)
    return tuple(np.ascontiguousarray(p[..., :3], dtype=np.uint8) for p in out)


def blend_mnistm(digits: np.ndarray, seed: int, split: str, n_total: int) -> np.ndarray:
    """uint8 (N, 3, 28, 28): ``|patch - digit|`` per channel, for uint8 ``digits`` (N, 28, 28).

    A random photo and a random 28x28 crop position are drawn for all
    ``n_total`` samples first (so a ``limit`` gives a prefix of the full set).
    """
    pics = photos()
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 0x4D4D])
    which = rng.integers(0, len(pics), n_total)
    u = rng.random((n_total, 2))
    n = len(digits)
    out = np.empty((n, 3, 28, 28), np.uint8)
    ar = np.arange(28)
    for k, pic in enumerate(pics):
        idx = np.flatnonzero(which[:n] == k)
        if idx.size == 0:
            continue
        top = (u[idx, 0] * (pic.shape[0] - 27)).astype(np.int64)
        left = (u[idx, 1] * (pic.shape[1] - 27)).astype(np.int64)
        patch = pic[(top[:, None] + ar)[:, :, None], (left[:, None] + ar)[:, None, :]]
        blended = np.abs(patch.astype(np.int16) - digits[idx, :, :, None].astype(np.int16))
        out[idx] = blended.transpose(0, 3, 1, 2).astype(np.uint8)
    return out
