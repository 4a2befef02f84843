"""Shared helpers for the PyTorch backend tests (fixtures, since tests cannot import siblings).

The small models and the hand-written guided/deconvnet reference live in
backflip.torch._testing, shared with tests/saliency (the saliency maps are checked
against the same reference).
"""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")
nn = torch.nn
F = torch.nn.functional


@pytest.fixture
def saved_bytes():
    """Call ``saved_bytes(fn)``: the bytes autograd saves for backward while ``fn()`` runs."""

    def measure(fn):
        total = [0]

        def pack(t):
            total[0] += t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        return total[0], out

    return measure


from backflip.torch._testing import (  # noqa: E402  the shared models and reference
    MODELS,
    FunctionalCNN,
    MixedNet,
    hand_rule,
    mlp,
)


@pytest.fixture
def seeded():
    torch.manual_seed(0)


@pytest.fixture
def models():
    """name -> (factory, linear_parts, input shape)."""
    return dict(MODELS)


@pytest.fixture
def helpers():
    class H:
        pass

    H.hand_rule = staticmethod(hand_rule)
    H.FunctionalCNN = FunctionalCNN
    H.MixedNet = MixedNet
    H.mlp = staticmethod(mlp)
    return H
