"""Shared helpers for the TensorFlow adapter tests: gradients through a tape."""

import pytest

from backflip._testing import require_backend

tf = require_backend("tensorflow")


def _vjp(fn, x, g=None):
    """``(y, dL/dx)`` of ``y = fn(x)`` for upstream ``g`` (ones when None), eager."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y, tape.gradient(y, x, output_gradients=g)


@pytest.fixture
def vjp():
    """``vjp(fn, x, g=None) -> (y, dx)`` with a GradientTape."""
    return _vjp
