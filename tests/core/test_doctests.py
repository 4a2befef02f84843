"""Every `>>>` example in backflip's docstrings runs and prints what it says."""
import doctest
import importlib
import pkgutil

import pytest

import backflip
from backflip._testing import require_backend

# Modules that need a framework: import it (or skip / fail under BACKFLIP_REQUIRE_ALL) first.
_NEEDS = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow", "keras": "keras",
          "pytensor": "pytensor", "dann": "torch", "saliency": "torch", "cli": "torch"}


def _modules():
    for info in pkgutil.walk_packages(backflip.__path__, prefix="backflip."):
        if info.name.rsplit(".", 1)[-1] in {"__main__"}:
            continue
        yield info.name


#: Modules whose examples train a model (seconds): slow, so make test-fast leaves them out.
_TRAINS = {"backflip.dann", "backflip.dann._train", "backflip.dann._tune"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _TRAINS else n
                                  for n in sorted(_modules())])
def test_docstring_examples_run(name):
    part = name.split(".")[1] if "." in name else ""
    if part in _NEEDS:
        require_backend(_NEEDS[part])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
