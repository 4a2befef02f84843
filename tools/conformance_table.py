"""Write the conformance table of the last test run into README.md.

Reads ``build/conformance.json`` (written by tests/conftest.py) and replaces the
block between the ``conformance:start`` / ``conformance:end`` markers of README.md.
Usage: ``python tools/conformance_table.py`` (or ``make conformance``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backflip.conformance import CASES

BACKENDS = ("torch", "jax", "tensorflow", "keras", "pytensor")
SYMBOL = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip"}
START, END = "<!-- conformance:start -->", "<!-- conformance:end -->"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "-"


def render(outcomes: dict[str, dict[str, str]]) -> str:
    lines = [
        "| case | op | params | shape | dtype | " + " | ".join(BACKENDS) + " |",
        "|---|---|---|---|---|" + "---|" * len(BACKENDS),
    ]
    for c in CASES:
        cells = [SYMBOL.get(outcomes.get(b, {}).get(c.id, ""), "not run") for b in BACKENDS]
        shape = "x".join(map(str, c.shape))
        lines.append(
            f"| {c.id} | {c.op} | {_params(c.params)} | {shape} | {c.dtype} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    outcomes = json.loads((root / "build" / "conformance.json").read_text())
    readme = root / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render(outcomes)}\n{END}{tail}")
    print(render(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
