"""Shared helpers for the PyTorch backend tests (fixtures, since tests cannot import siblings)."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")


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
