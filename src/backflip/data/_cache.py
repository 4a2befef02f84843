"""The on-disk cache: its root, per-data-set manifests, and sha256 verification.

Layout: ``<root>/<dataset>/`` holds the data files and ``manifest.json``::

    {"dataset": "mnist", "files": {"train-images-idx3-ubyte": {"sha256": "...", "size": 47040016}},
     "verified": {"train-images-idx3-ubyte": [47040016, mtime_ns, ctime_ns, inode]}, ...}

``verified`` caches a successful full hash by (size, mtime_ns, ctime_ns, inode): a
file that was written to, replaced or moved since is hashed again, so a truncated or
rewritten file is always caught (even one whose mtime was set back: the ctime cannot
be); an unchanged one costs a ``stat``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backflip._errors import BackflipValueError

__all__ = [
    "atomic_write_bytes",
    "data_root",
    "dataset_dir",
    "read_manifest",
    "sha256_file",
    "verify_files",
    "write_manifest",
]

MANIFEST = "manifest.json"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``root`` if given, else ``$BACKFLIP_DATA``, else ``~/.cache/backflip``.

    ``$XDG_CACHE_HOME`` replaces ``~/.cache`` where it is set. Nothing is created.

    >>> str(data_root("/tmp/somewhere"))
    '/tmp/somewhere'
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BACKFLIP_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "backflip"


def dataset_dir(name: str, root: str | os.PathLike[str] | None = None, *, create: bool = False) -> Path:
    """``<root>/<name>``; with ``create=True`` it is made and checked to be writable."""
    path = data_root(root) / name
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
                pass
        except OSError as err:
            raise BackflipValueError(
                f"the data directory {path} is not writable ({err.strerror or err}). "
                "Set $BACKFLIP_DATA to a folder you can write to (or pass root=...; "
                "CLI: `backflip data --root DIR`, `backflip train --data-root DIR`)."
            ) from err
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a data-set directory, or None if there is none."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' table")
    except ValueError as err:
        raise BackflipValueError(
            f"the manifest {path} is damaged ({err}). Re-fetch the data set with "
            f"`backflip data fetch {directory.name} --force`."
        ) from err
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write a manifest atomically."""
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(directory / MANIFEST, text.encode())


def _refetch_hint(dataset: str) -> str:
    return f"Re-fetch it with `backflip data fetch {dataset} --force`."


def verify_files(directory: Path, manifest: dict[str, Any], names: list[str] | None = None,
                 *, full: bool = False) -> None:
    """Check the files of a manifest against their recorded sha256.

    A file whose (size, mtime, ctime, inode) matches the last successful check is
    trusted unless ``full``; any other file is hashed. Any write to a file changes its
    ctime, which no tool can set back (``touch`` and ``cp -p`` restore only the mtime),
    so a file changed in place is hashed again. Raises BackflipValueError for a missing,
    truncated or corrupt file, with the command that re-fetches it.
    """
    dataset = manifest.get("dataset", directory.name)
    verified = manifest.setdefault("verified", {})
    changed = False
    for name in names if names is not None else sorted(manifest["files"]):
        entry = manifest["files"][name]
        path = directory / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BackflipValueError(
                f"{path} is missing from the {dataset} cache. {_refetch_hint(dataset)}"
            ) from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        if not full and verified.get(name) == stamp:
            continue
        if st.st_size != entry["size"]:
            raise BackflipValueError(
                f"{path} is truncated or corrupt: {st.st_size} bytes, expected "
                f"{entry['size']}. {_refetch_hint(dataset)}"
            )
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise BackflipValueError(
                f"{path} is corrupt: sha256 {digest[:16]}... does not match the manifest's "
                f"{entry['sha256'][:16]}.... {_refetch_hint(dataset)}"
            )
        if verified.get(name) != stamp:
            verified[name] = stamp
            changed = True
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache is still usable
            write_manifest(directory, manifest)
