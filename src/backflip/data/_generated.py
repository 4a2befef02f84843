"""Cache of generated data sets: one uncompressed .npz per (split, seed), hashed in the manifest."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data._cache import (
    atomic_write_bytes,
    dataset_dir,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)

__all__ = ["cached_npz", "npz_name"]


def npz_name(split: str, seed: int) -> str:
    return f"{split}-seed{seed}.npz"


def cached_npz(name: str, split: str, seed: int, root: str | os.PathLike[str] | None,
               build: Callable[[], dict[str, np.ndarray]], built_from: str = "",
               force: bool = False, file: str | None = None) -> dict[str, np.ndarray]:
    """Arrays of a generated data set, from the cache if present and valid, else built and cached.

    An entry built from other data (``built_from``, e.g. the MNIST fingerprint) is
    rebuilt when that changes. A corrupt cached file raises with the fix. ``file``
    replaces the default name :func:`npz_name` ``(split, seed)``.
    """
    directory = dataset_dir(name, root)
    file = file or npz_name(split, seed)
    manifest = read_manifest(directory) if directory.is_dir() else None
    entry = (manifest or {"files": {}})["files"].get(file)
    if entry is not None and entry.get("built_from", "") == built_from and not force:
        verify_files(directory, manifest, [file])
        try:
            with np.load(directory / file) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise BackflipValueError(
                f"{directory / file} cannot be read ({err}). Rebuild it with "
                f"`backflip data fetch {name} --force`."
            ) from err
    directory = dataset_dir(name, root, create=True)  # fail before the work if unwritable
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(directory / file, buf.getvalue())
    manifest = read_manifest(directory) or {"dataset": name, "files": {}}
    manifest["files"][file] = {
        "sha256": sha256_file(directory / file),
        "size": (directory / file).stat().st_size,
        "built_from": built_from,
        "shape": list(arrays["x"].shape),
    }
    manifest.get("verified", {}).pop(file, None)
    write_manifest(directory, manifest)
    return arrays


def cached_path(name: str, split: str, seed: int, root: str | os.PathLike[str] | None) -> Path:
    return dataset_dir(name, root) / npz_name(split, seed)
