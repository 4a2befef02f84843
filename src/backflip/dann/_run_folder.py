"""The run folder: config.json, metrics.jsonl, checkpoint.pt, result.json, and what a stop keeps.

Every file is written whole or not at all (a temp file in the same folder, then
``os.replace``), and only by the main process (rank 0) of a distributed run, so a run
killed at any moment leaves its last good checkpoint and complete metrics behind.

>>> import tempfile
>>> folder = RunFolder.prepare(tempfile.mkdtemp())
>>> folder.write_json("result.json", {"target_accuracy": 0.5}).name
'result.json'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backflip._errors import BackflipValueError
from backflip.dann._checkpoint import save_checkpoint

__all__ = ["RunFolder", "check_out"]


def check_out(out: str | os.PathLike[str] | None) -> Path | None:
    """Create the folder ``out`` if needed and prove it writable; ``None`` stays ``None``.

    >>> import tempfile
    >>> check_out(None) is None
    True
    >>> check_out(Path(tempfile.mkdtemp()) / "run").is_dir()
    True
    """
    if out is None:
        return None
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a probe of its own: every torchrun process checks the same folder at once
        with tempfile.NamedTemporaryFile(dir=path, prefix=".backflip-write-test-"):
            pass
    except OSError as err:
        raise BackflipValueError(
            f"the output folder {str(path)!r} is not writable ({err.strerror}). Pass a folder "
            "you can write to as out= (CLI: --out DIR)."
        ) from None
    return path


class RunFolder:
    """One run's folder; every method is a no-op on processes other than rank 0.

    >>> import tempfile
    >>> folder = RunFolder.prepare(tempfile.mkdtemp())
    >>> folder.write_metrics([{"epoch": 1}]).read_text()
    '{"epoch": 1}\\n'
    >>> RunFolder(folder.path, main=False).write_json("result.json", {}) is None
    True
    """

    def __init__(self, path: Path | None, main: bool = True) -> None:
        self.path, self.main = path, main

    @classmethod
    def prepare(cls, out: str | os.PathLike[str] | None, main: bool = True) -> RunFolder:
        """Check ``out`` (see :func:`check_out`) and return its RunFolder."""
        return cls(check_out(out), main)

    @property
    def checkpoint(self) -> Path | None:
        """Where the checkpoint lives (``None`` without a folder)."""
        return None if self.path is None else self.path / "checkpoint.pt"

    def _writes(self) -> bool:
        return self.path is not None and self.main

    def write_text(self, name: str, text: str) -> Path | None:
        """Write ``name`` atomically (temp file + rename); returns its path."""
        if not self._writes():
            return None
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)
        return self.path / name

    def write_json(self, name: str, value: Any) -> Path | None:
        """Write ``value`` as indented JSON."""
        return self.write_text(name, json.dumps(value, indent=2) + "\n")

    def write_metrics(self, history: list[dict[str, Any]]) -> Path | None:
        """metrics.jsonl: one JSON object per finished epoch."""
        return self.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))

    def save(self, state: dict[str, Any]) -> Path | None:
        """Write checkpoint.pt atomically (:func:`backflip.dann.save_checkpoint`)."""
        if not self._writes():
            return None
        return save_checkpoint(state, self.checkpoint)

    def last_good(self) -> tuple[Path | None, str]:
        """The checkpoint a stopped run keeps (``None`` if none) and the sentence saying so."""
        path = self.checkpoint
        if path is None or not path.exists():
            return None, ""
        return path, f"The last good checkpoint is kept at {str(path)!r}. "
