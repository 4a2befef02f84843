"""The public surface of backflip.torch."""

from __future__ import annotations

from backflip._testing import require_backend

torch = require_backend("torch")

import backflip.torch as bft  # noqa: E402
from backflip._api import CORE_OPS  # noqa: E402


def test_all_contains_core_ops_and_modules():
    assert set(CORE_OPS) <= set(bft.__all__)
    extra = {
        "GradientReversal",
        "GradientScale",
        "GradientClip",
        "check_gradient",
        "GradientReport",
        "GradientCheckError",
        "override_gradients",
        "OverrideReport",
    }
    assert extra <= set(bft.__all__)
    for name in bft.__all__:
        obj = getattr(bft, name)  # a documented function or class of the adapter
        assert callable(obj) and (obj.__doc__ or "").strip(), name
        assert obj.__module__.startswith("backflip."), (name, obj.__module__)
