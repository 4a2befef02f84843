"""Embedded data sets: two moons and its rotated target, and composite-zero from MNIST."""

from __future__ import annotations

import numpy as np

from backflip._optional import require
from backflip.data._dataset import ArrayDataset

__all__ = ["MOONS_ANGLE", "MOONS_CENTRE", "MOONS_NOISE", "MOONS_SIZES", "composite_zero", "moons"]

#: Rotation of the "moons-rotated" target, in degrees (counter-clockwise).
MOONS_ANGLE = 35.0
#: Centre of the rotation: the centroid of the noise-free moons of make_moons.
MOONS_CENTRE = (0.5, 0.25)
#: Gaussian noise of make_moons.
MOONS_NOISE = 0.1
MOONS_SIZES = {"train": 1000, "test": 1000}
_SPLIT_CODE = {"train": 0, "test": 1}


def rotate(points: np.ndarray, degrees: float, centre: tuple[float, float] = MOONS_CENTRE) -> np.ndarray:
    """Rotate 2-d points counter-clockwise by ``degrees`` about ``centre``."""
    t = np.deg2rad(degrees)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.asarray(centre)
    return (points - c) @ r.T + c


def moons(split: str, seed: int, rotated: bool) -> ArrayDataset:
    """Two moons (sklearn ``make_moons``, noise 0.1); the target is rotated by 35 degrees."""
    make_moons = require("sklearn.datasets", purpose="the moons data set").make_moons

    code = np.random.SeedSequence([seed, _SPLIT_CODE[split], int(rotated)])
    x, y = make_moons(MOONS_SIZES[split], noise=MOONS_NOISE,
                      random_state=int(code.generate_state(1)[0]))
    if rotated:
        x = rotate(x, MOONS_ANGLE)
    return ArrayDataset(x.astype(np.float32), y.astype(np.int64), 2,
                        "moons-rotated" if rotated else "moons")


def composite_zero(mnist: ArrayDataset, seed: int, split: str, limit: int | None) -> ArrayDataset:
    """Sums of two MNIST digits (clipped to [0, 1]); y = 1 iff one of them is a 0.

    Exactly half of the ``len(mnist)`` samples are positive (a random zero plus a
    random digit of any class, in random order), the other half pairs two
    non-zero digits. ``attrs["digits"]`` (N, 2) holds both digit labels.
    """
    n = len(mnist)
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 0xC0])
    y = np.zeros(n, np.int64)
    y[rng.permutation(n)[: n // 2]] = 1
    zeros = np.flatnonzero(mnist.y == 0)
    others = np.flatnonzero(mnist.y != 0)
    anyd = rng.integers(0, n, n)
    a = np.where(y == 1, zeros[rng.integers(0, len(zeros), n)], others[rng.integers(0, len(others), n)])
    b = np.where(y == 1, anyd, others[rng.integers(0, len(others), n)])
    swap = rng.random(n) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    m = n if limit is None else min(limit, n)
    a, b, y = a[:m], b[:m], y[:m]
    x = np.minimum(mnist.x[a] + mnist.x[b], np.float32(1.0))
    digits = np.stack([mnist.y[a], mnist.y[b]], axis=1).astype(np.int64)
    return ArrayDataset(x, y, 2, "composite-zero", {"digits": digits})
