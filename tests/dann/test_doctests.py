"""The ``>>>`` examples in backflip.dann run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["backflip.dann", "backflip.dann._models", "backflip.dann._config",
           "backflip.dann._checkpoint", "backflip.dann._data", "backflip.dann._selection",
           "backflip.dann._train", "backflip.dann._plots", "backflip.dann._experiments"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
