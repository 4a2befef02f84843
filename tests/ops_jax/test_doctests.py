"""The >>> examples in backflip.jax's docstrings run and print what they show."""

import doctest
import importlib

import pytest

from backflip._testing import require_backend

require_backend("jax")


@pytest.mark.parametrize("name", ["backflip.jax", "backflip.jax._ops"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
