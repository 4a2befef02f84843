"""The docstring examples of the rule, override and saliency modules run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

from backflip._testing import require_backend

require_backend("torch")

MODULES = [
    "backflip.torch._rules",
    "backflip.torch._override",
    "backflip.saliency._maps",
    "backflip.saliency._plot",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
