"""The ``>>>`` examples in backflip.torch's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

MODULES = ["_ops", "_modules", "_check", "_override"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"backflip.torch.{name}")
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
