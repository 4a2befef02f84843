"""The docstring examples of the saliency modules run and hold (backflip.torch's: tests/ops_torch)."""

from __future__ import annotations

import doctest
import importlib

import pytest

from backflip._testing import require_backend

require_backend("torch")

MODULES = [
    "backflip.saliency._maps",
    "backflip.saliency._plot",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
