"""Sphinx extension: the API reference covers every public name, each with a docstring.

* every public module (``PUBLIC_MODULES``) has a page ``api/<module>.rst``;
* every name in a public module's ``__all__`` has a docstring of its own (not one
  inherited from ``object`` or a framework base class), and every public function and
  class a runnable ``>>>`` example in it (the doctests run them): a missing one is a
  warning, which ``make docs`` (``-W``) turns into an error.
"""

import importlib
import inspect
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

PUBLIC_MODULES = [
    "backflip", "backflip.torch", "backflip.jax", "backflip.tensorflow", "backflip.keras",
    "backflip.pytensor", "backflip.rules", "backflip.schedules", "backflip.conformance",
    "backflip.data", "backflip.dann", "backflip.saliency",
]


def _own_doc(module: str, public: str, obj) -> str | None:
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.ismodule(obj):
        return obj.__doc__
    # data and type aliases: a ``#:`` comment above the assignment
    attr_docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    return "\n".join(attr_docs.get(("", public), [])) or getattr(obj, "__doc__", None)


def problems(srcdir: Path) -> list[str]:
    """Every public module without an API page, and every public name without a docstring."""
    found = []
    for name in PUBLIC_MODULES:
        if not (Path(srcdir) / "api" / f"{name}.rst").exists():
            found.append(f"public module {name} has no API page docs/api/{name}.rst")
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            found.append(f"public module {name} has no docstring")
        for public in getattr(module, "__all__", []):
            obj = getattr(module, public)
            doc = _own_doc(name, public, obj) or ""
            if not doc.strip():
                found.append(f"{name}.{public} has no docstring of its own")
            elif (inspect.isclass(obj) or inspect.isfunction(obj)) and ">>>" not in doc:
                found.append(f"{name}.{public} has no runnable >>> example in its docstring")
    return found


def check_public_names(app) -> None:
    for problem in problems(Path(app.srcdir)):
        logger.warning(problem)


def _public_canonical_names() -> None:
    """Document a class shared by several adapters (``OverrideReport``) under each public
    name only: without this, autodoc gives each page a ``:canonical:`` private name
    (``backflip._override_report.OverrideReport``) and the copies collide."""
    from sphinx.ext.autodoc import _property_types

    cls = _property_types._ClassDefProperties
    original = cls.canonical_full_name

    def canonical_full_name(self):
        name = original.fget(self)
        return None if name and "._" in name else name

    cls.canonical_full_name = property(canonical_full_name)


def setup(app):
    _public_canonical_names()
    app.connect("builder-inited", check_public_names)
    return {"version": "1", "parallel_read_safe": True}
