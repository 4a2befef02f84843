"""The >>> examples in backflip.pytensor's docstrings run and print what they show."""

import doctest
import importlib

import pytest

from backflip._testing import require_backend

require_backend("pytensor")


@pytest.mark.parametrize(
    "name", ["backflip.pytensor", "backflip.pytensor._ops"]
)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
