"""Write the conformance table of the last test run into README.md.

Reads ``build/conformance*.json`` (``conformance.json`` is written by tests/conftest.py;
``conformance-keras-<backend>.json`` by the Keras tests' per-backend subprocesses) and replaces the
block between the ``conformance:start`` / ``conformance:end`` markers of README.md.
Usage: ``python tools/conformance_table.py`` (or ``make conformance``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backflip.conformance import CASES

# column key in the JSON files -> header
BACKENDS = {
    "torch": "PyTorch",
    "jax": "JAX",
    "tensorflow": "TensorFlow",
    "keras": "Keras (TF)",
    "keras-jax": "Keras (JAX)",
    "keras-torch": "Keras (PyTorch)",
    "pytensor": "PyTensor",
}
SYMBOL = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip"}
START, END = "<!-- conformance:start -->", "<!-- conformance:end -->"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "-"


def render(outcomes: dict[str, dict[str, str]]) -> str:
    lines = [
        "| case | op | params | shape | dtype | " + " | ".join(BACKENDS.values()) + " |",
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
    outcomes: dict[str, dict[str, str]] = {}
    for path in sorted((root / "build").glob("conformance*.json")):
        outcomes.update(json.loads(path.read_text()))
    readme = root / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render(outcomes)}\n{END}{tail}")
    print(render(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
