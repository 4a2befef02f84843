"""Every example in the README and the guides runs, and the documentation builds.

Each page's ```python blocks run in order, in one namespace (a later block may use an
earlier block's names), in a fresh process whose working folder is a temporary one. A block
preceded by ``<!-- not run: reason -->`` is illustration only (it needs a checkpoint or a
fetched data set). Commands go in ```bash or ```text blocks, which are not run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backflip._testing import require_backend

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("**/*.md"))]
PAGES = [p for p in PAGES if "_build" not in p.parts]
FRAMEWORKS = ("torch", "jax", "tensorflow", "keras", "pytensor")
# pages that train for more than a few seconds
SLOW = {"README.md", "guides/own-data.md", "guides/presets.md", "guides/domain-adaptation.md",
        "guides/gradient-ops.md", "guides/saliency.md", "guides/distributed.md"}

RUNNER = """
import sys, traceback
blocks = {blocks!r}
namespace = {{"__name__": "__main__"}}
for i, code in enumerate(blocks):
    try:
        exec(compile(code, f"<block {{i + 1}}>", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"block {{i + 1}} failed:\\n{{code}}", file=sys.stderr)
        sys.exit(1)
"""


def _name(page: Path) -> str:
    return page.relative_to(DOCS if DOCS in page.parents else ROOT).as_posix()


def blocks(page: Path) -> list[str]:
    """The page's ```python blocks that run, in order."""
    text = page.read_text()
    return [
        m.group(2)
        for m in re.finditer(r"(<!-- not run[^>]*-->\s*)?```python\n(.*?)```", text, re.S)
        if not m.group(1)
    ]


def frameworks(code: str) -> list[str]:
    """The frameworks a page imports (directly or through a backflip adapter)."""
    found = set(re.findall(r"^\s*(?:import|from) (torch|jax|tensorflow|keras|pytensor)\b",
                           code, re.M))
    found |= set(re.findall(r"backflip\.(torch|jax|tensorflow|keras|pytensor)\b", code))
    if "keras" in found or "tensorflow" in found:
        found.add("tensorflow")
    return [f for f in FRAMEWORKS if f in found]


RUNNABLE = [p for p in PAGES if blocks(p)]


def _param(page: Path):
    marks = [pytest.mark.slow] if _name(page) in SLOW else []
    return pytest.param(page, id=_name(page), marks=marks)


def test_every_guide_has_a_runnable_example():
    guides = sorted(_name(p) for p in (DOCS / "guides").glob("*.md"))
    without = [g for g in guides if not blocks(DOCS / g)]
    assert without == ["guides/development.md"], without


@pytest.mark.parametrize("page", [_param(p) for p in RUNNABLE])
def test_page_examples_run(page, tmp_path):
    code = blocks(page)
    for framework in frameworks("\n".join(code)):
        require_backend(framework)
    env = {**os.environ, "MPLBACKEND": "Agg", "KERAS_BACKEND": os.environ.get(
        "KERAS_BACKEND", "tensorflow")}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER.format(blocks=code)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{_name(page)} failed:\n{proc.stderr[-4000:]}"


def test_results_page_is_a_results_page():
    text = (DOCS / "results.md").read_text()
    assert "session" not in text.lower()
    assert "## Trainer data paths (bench/train_data.py)" in text


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.(?:md|png))(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{_name(page)} links to missing {target}"


def test_docs_pages_are_in_the_toctree():
    index = (DOCS / "index.md").read_text()
    for page in sorted((DOCS / "guides").glob("*.md")):
        assert f"guides/{page.stem}" in index, f"docs/index.md does not list {page.name}"
    assert "results" in index


def test_every_public_name_has_a_docstring_and_every_module_a_page():
    for framework in ("torch", "jax", "tensorflow", "keras", "pytensor"):
        require_backend(framework)
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import backflip_api
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    assert backflip_api.problems(DOCS) == []


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "--keep-going", "-q",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
