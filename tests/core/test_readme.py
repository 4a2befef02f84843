"""The README's promises hold: it starts with the two commands, its Python examples run,
and its conformance table lists every case."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from backflip.conformance import CASES

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text()


def _examples() -> dict[str, str]:
    """The Python blocks of each `## ` section, joined: later blocks may use earlier names.

    A block preceded by `<!-- not run: reason -->` is illustration only (it needs a
    checkpoint or a fetched data set).
    """
    programs: dict[str, str] = {}
    for section in re.split(r"\n(?=## )", TEXT):
        title = section.split("\n", 1)[0].lstrip("# ").strip()
        blocks = [
            m.group(2)
            for m in re.finditer(r"(<!-- not run[^>]*-->\s*)?```python\n(.*?)```", section, re.S)
            if not m.group(1)
        ]
        if blocks:
            programs[title] = "\n".join(blocks)
    return programs


EXAMPLES = _examples()


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```\n(.*?)```", TEXT, re.S).group(1)
    assert first_block.split("\n")[:2] == ["make demo", "make test"]
    assert TEXT.index("```") < TEXT.index("\n## ")


def test_readme_has_examples():
    assert len(EXAMPLES) >= 5, sorted(EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("section", sorted(EXAMPLES))
def test_readme_python_examples_run(section, tmp_path):
    code = EXAMPLES[section]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"README section {section!r} failed:\n{proc.stderr[-3000:]}"


def test_readme_conformance_table_lists_every_case():
    table = TEXT.split("<!-- conformance:start -->", 1)[1].split("<!-- conformance:end -->", 1)[0]
    for case in CASES:
        assert f"| {case.id} |" in table, f"README table lacks {case.id}: run make conformance"
    assert "FAIL" not in table
