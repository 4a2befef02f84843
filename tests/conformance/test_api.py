"""The adapters' public names: the same core in each, and the README's API table says which.

README.md's table "API: the same names in every framework" has one row per name (or
group of names) and one column per adapter, ticked where the adapter has it.
"""

import inspect
import re
from pathlib import Path

from backflip._api import ADAPTER_API, CORE_OPS
from backflip._testing import require_backend

README = Path(__file__).resolve().parents[2] / "README.md"
ADAPTERS = ("torch", "jax", "tensorflow", "keras", "pytensor")
SHARED = set(ADAPTER_API)


def _api_table() -> list[tuple[list[str], set[str]]]:
    """The README API table's rows: ``(names, adapters ticked)``."""
    section = README.read_text().split("\n## API", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip().strip("|") for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].split("|")]
    assert header[-5:] == list(ADAPTERS), header
    rows = []
    for line in lines[2:]:  # after the header and the |---| line
        cells = [cell.strip() for cell in line.split("|")]
        assert len(cells) == len(header), line
        names = re.findall(r"`([A-Za-z_]\w*)", cells[0])  # `name(args)`, not `(fn, ...)`
        assert names, line
        rows.append((names, {a for a, cell in zip(ADAPTERS, cells[-5:], strict=True) if cell == "✓"}))
    return rows


def _has(module, name: str) -> bool:
    """``name`` is exported by the adapter, or is a method of a class it exports (set_progress)."""
    return name in module.__all__ or any(
        inspect.isclass(obj := getattr(module, n)) and hasattr(obj, name) for n in module.__all__
    )


def test_adapter_exports_the_core_ops(driver):
    bf = driver.bf
    assert SHARED <= set(bf.__all__), SHARED - set(bf.__all__)
    for name in sorted(SHARED):
        assert callable(getattr(bf, name)), name
    assert inspect.isclass(bf.OverrideReport)


def test_readme_api_column_is_what_the_adapter_exports(driver):
    for names, ticked in _api_table():
        if driver.name in ticked:
            assert any(_has(driver.bf, n) for n in names), (driver.name, names)
        else:
            assert not any(n in driver.bf.__all__ for n in names), (driver.name, names)


def test_functions_shared_by_every_adapter_are_the_readme_rows_ticked_everywhere():
    modules = [require_backend(f"backflip.{a}") for a in ADAPTERS]
    shared = set.intersection(*(set(m.__all__) for m in modules))
    classes = {n for n in shared if any(inspect.isclass(getattr(m, n)) for m in modules)}
    assert classes == {"OverrideReport"}
    functions = shared - classes
    everywhere = {n for names, ticked in _api_table() if ticked == set(ADAPTERS) for n in names}
    assert functions == everywhere == set(CORE_OPS) | {"override_gradients"}
    for m in modules:
        assert all(inspect.isfunction(getattr(m, n)) for n in functions), m.__name__
