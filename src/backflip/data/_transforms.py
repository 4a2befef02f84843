"""Explicit transforms between domains: channels and image size."""

from __future__ import annotations

import dataclasses

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data._dataset import ArrayDataset

__all__ = ["resize", "to_grey", "to_rgb"]

#: ITU-R BT.601 luma weights of R, G, B (as in PIL's ``convert("L")``).
LUMA = (0.299, 0.587, 0.114)


def _images(ds: ArrayDataset, what: str) -> None:
    if ds.x.ndim != 4:
        raise BackflipValueError(
            f"{what} needs images (N, C, H, W); {ds.name!r} has samples of shape "
            f"{ds.x.shape[1:]}."
        )


def _grey_or_rgb(ds: ArrayDataset, what: str) -> int:
    """The channel count of an image data set, which must be 1 or 3."""
    _images(ds, what)
    channels = ds.x.shape[1]
    if channels not in (1, 3):
        raise BackflipValueError(f"{what} needs 1 or 3 channels; {ds.name!r} has {channels}.")
    return channels


def to_rgb(ds: ArrayDataset) -> ArrayDataset:
    """Repeat a single grey channel three times; RGB data sets are returned as they are.

    >>> ds = ArrayDataset(np.ones((2, 1, 4, 4), np.float32), np.zeros(2, np.int64), 10, "g")
    >>> to_rgb(ds).x.shape
    (2, 3, 4, 4)
    """
    if _grey_or_rgb(ds, "to_rgb") == 3:
        return ds
    return dataclasses.replace(ds, x=np.repeat(ds.x, 3, axis=1))


def to_grey(ds: ArrayDataset) -> ArrayDataset:
    """One luminance channel ``Y = 0.299 R + 0.587 G + 0.114 B``; grey data sets are returned as they are.

    Removes colour, the cue that tells rendered colour digits from grey MNIST at a
    glance, while keeping contrast and polarity (dark-on-light stays dark-on-light).

    >>> x = np.ones((2, 3, 4, 4), np.float32) * np.array([1, 0, 0], np.float32)[:, None, None]
    >>> g = to_grey(ArrayDataset(x, np.zeros(2, np.int64), 10, "c"))
    >>> g.x.shape, round(float(g.x.max()), 3)
    ((2, 1, 4, 4), 0.299)
    """
    if _grey_or_rgb(ds, "to_grey") == 1:
        return ds
    y = np.einsum("c,nchw->nhw", np.asarray(LUMA, np.float32), ds.x.astype(np.float32))
    return dataclasses.replace(ds, x=np.clip(y, 0.0, 1.0)[:, None].astype(np.float32))


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of bilinear weights with half-pixel centres."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging each output cell's footprint (for shrinking)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j in range(n_in):
            w[i, j] = max(0.0, min(edges[i + 1], j + 1) - max(edges[i], j))
    return w / w.sum(axis=1, keepdims=True)


def resize(ds: ArrayDataset, size: int) -> ArrayDataset:
    """Resize images to ``size x size``: bilinear when growing, area average when shrinking.

    Separable and vectorised (two matrix products), values stay in ``[0, 1]``.

    >>> ds = ArrayDataset(np.ones((2, 1, 28, 28), np.float32), np.zeros(2, np.int64), 10, "m")
    >>> resize(ds, 32).x.shape
    (2, 1, 32, 32)
    """
    _images(ds, "resize")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise BackflipValueError(f"resize needs a positive int size; got {size!r}.")
    h, w = ds.x.shape[2:]
    if (h, w) == (size, size):
        return ds

    def weights(n: int) -> np.ndarray:
        return (_linear_weights if size >= n else _area_weights)(n, size).astype(np.float32)

    x = np.einsum("ih,nchw,jw->ncij", weights(h), ds.x, weights(w), optimize=True)
    return dataclasses.replace(ds, x=np.clip(x, 0.0, 1.0).astype(np.float32))
