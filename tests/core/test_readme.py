"""The README's promises hold: it starts with the two commands, it is a front door (short,
with the install, the example, the API and conformance tables and links to the guides),
and its conformance table lists every case. Its Python examples run in
tests/core/test_docs.py, with every guide's."""

import re
from pathlib import Path

from backflip.conformance import CASES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEXT = README.read_text()


def _section(title: str) -> str:
    for section in re.split(r"\n(?=## )", TEXT):
        if section.split("\n", 1)[0].lstrip("# ").strip() == title:
            return section
    raise AssertionError(f"README has no section {title!r}")


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```\n(.*?)```", TEXT, re.S).group(1)
    assert first_block.split("\n")[:2] == ["make demo", "make test"]
    assert TEXT.index("```") < TEXT.index("\n## ")


def test_readme_is_a_front_door():
    assert len(TEXT.splitlines()) <= 200
    for needed in ('pip install "backflip[torch]"', "make test-fast", "make docs",
                   "backflip --version", "CHANGELOG.md", "docs/results.md",
                   "docs/img/moons-decision-boundary.png"):
        assert needed in TEXT, needed
    for guide in sorted((ROOT / "docs" / "guides").glob("*.md")):
        assert f"docs/guides/{guide.name}" in TEXT, f"README does not link {guide.name}"


def test_readme_shows_your_own_model_and_data():
    section = _section("Your own model and data")
    assert "docs/guides/own-data.md" in section
    assert "ArrayDataset(" in section                       # arrays
    assert "backflip train --source data/photos" in section  # an image folder, from the CLI
    assert "torch.utils.data.Dataset" in section             # a streamed Dataset


def test_readme_conformance_table_lists_every_case():
    table = TEXT.split("<!-- conformance:start -->", 1)[1].split("<!-- conformance:end -->", 1)[0]
    for case in CASES:
        assert f"| {case.id} |" in table, f"README table lacks {case.id}: run make conformance"
    assert "FAIL" not in table
