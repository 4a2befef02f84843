"""What :func:`backflip.dann.tune` writes: ``out/tune.json`` and ``out/tune.md`` (the trials' table).

The table has one row per trial of the study (every worker's): its values (headed by
their CLI flags: ``--target-entropy`` is a value, ``target_entropy`` the criterion), its
state, each label-free criterion of its last epoch, and target accuracy in a column of
its own, headed as what it is: an oracle that uses target labels, never used to pick.

>>> rows = [{"number": 0, "state": "complete", "params": {"lr": 0.01}, "value": 0.2,
...          "dev_risk": 0.2, "source_val_acc": 0.8, "oracle_target_acc": 0.9}]
>>> print(trials_table(rows, ["lr"], "dev_risk", best=0))
| trial | state | `--lr` | dev_risk (min, picks) | source_val_acc | target_entropy | snd | target accuracy (oracle: uses target labels, never used to pick) | pick |
|---|---|---|---|---|---|---|---|---|
| 0 | complete | 0.01 | 0.2 | 0.8 | – | – | 0.9 | **pick** |
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backflip.dann._selection import CRITERIA

__all__ = ["ORACLE", "trials_table", "write_atomic", "write_json"]

#: The heading of the target-accuracy column, in the table and in tune.json.
ORACLE = "target accuracy (oracle: uses target labels, never used to pick)"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _state(row: dict[str, Any]) -> str:
    # "failed (collapse)", "pruned (epoch 2)": the reason in full is in tune.json
    if row["state"] == "failed" and row.get("stop"):
        return f"failed ({row['stop']})"
    if row["state"] == "pruned" and row.get("epoch"):
        return f"pruned (epoch {row['epoch']})"
    return row["state"]


def trials_table(rows: Sequence[dict[str, Any]], params: Sequence[str], criterion: str,
                 best: int | None) -> str:
    """The Markdown table of the trials; the objective's column says its direction."""
    crits = [criterion, *(c for c in CRITERIA if c != criterion)]
    oracle = any(r.get("oracle_target_acc") is not None for r in rows)
    head = ["trial", "state", *(f"`--{p.replace('_', '-')}`" for p in params),
            *(f"{c} ({CRITERIA[c]}, picks)" if c == criterion else c for c in crits),
            *([ORACLE] if oracle else []), "pick"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["number"]), _state(r), *(_cell(r["params"].get(p)) for p in params),
                 *(_cell(r.get(c)) for c in crits),
                 *([_cell(r.get("oracle_target_acc"))] if oracle else []),
                 "**pick**" if r["number"] == best else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (several workers may write at once)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, value: Any) -> Path:
    """``value`` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(value, indent=2) + "\n")
