"""Fixed train/test splits for data sets that come as one file: stratified, the same everywhere.

The order comes from a hash of (data set name, sample index), not from NumPy's
random generators, whose streams may change between NumPy versions: a split is a
property of the data set, never of the user's seed or of the installed NumPy.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["fixed_split", "hash_order"]

_MASK = (1 << 64) - 1


def hash_order(n: int, name: str) -> np.ndarray:
    """A fixed permutation of ``range(n)``: indices sorted by splitmix64 of (crc32(name), index).

    >>> hash_order(6, "example").tolist()
    [2, 4, 3, 1, 5, 0]
    """
    offset = (zlib.crc32(name.encode()) * 0x9E3779B97F4A7C15) & _MASK
    z = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(offset)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return np.argsort(z, kind="stable")


def fixed_split(y: np.ndarray, n_test: int, name: str) -> dict[str, np.ndarray]:
    """Indices ``{"train": ..., "test": ...}`` of a fixed split of labels ``y``, stratified.

    Each class gives the test set its share of ``n_test`` (largest remainder, so the
    test set has exactly ``n_test`` samples): the first ones of that class in
    :func:`hash_order` ``(len(y), name)``. Both parts are then ordered by
    ``hash_order(len(y), name + "/order")``, so a prefix (``limit``) mixes the classes.
    The parts are disjoint and together cover every sample.

    >>> s = fixed_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4, "example")
    >>> s["train"].tolist(), s["test"].tolist()
    ([6, 1, 0, 5], [3, 2, 4, 7])
    """
    y = np.asarray(y)
    if len(y) == 0:
        return {"train": np.zeros(0, np.int64), "test": np.zeros(0, np.int64)}
    order = hash_order(len(y), name)
    classes, counts = np.unique(y, return_counts=True)
    share = counts * (n_test / len(y))
    take = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - take), kind="stable")[: n_test - int(take.sum())]
    take[extra] += 1
    in_order = y[order]
    test = np.zeros(len(y), bool)
    for c, k in zip(classes, take, strict=True):
        test[order[np.flatnonzero(in_order == c)[:k]]] = True
    # a second, independent order for the samples within each part: with the first one,
    # a class that filled its test share early would crowd the head of the train part
    rank = np.empty(len(y), np.int64)
    rank[hash_order(len(y), name + "/order")] = np.arange(len(y))
    train, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    return {"train": train[np.argsort(rank[train], kind="stable")],
            "test": test_idx[np.argsort(rank[test_idx], kind="stable")]}
