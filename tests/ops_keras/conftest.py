"""Backend-neutral gradient helpers for the Keras tests.

These tests run in-process under the Keras backend of the test process (TensorFlow
by default) and, from test_backends.py, in one subprocess per other backend
(``KERAS_BACKEND`` must be set before keras is imported).
"""

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")

if keras.backend.backend() == "jax":  # the conformance table has float64 cases
    import jax

    jax.config.update("jax_enable_x64", True)


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def vjp_any(fn, x, g=None):
    """``(y, dL/dx)`` as NumPy arrays for ``y = fn(x)`` and upstream ``g`` (ones if None)."""
    backend = keras.backend.backend()
    x = np.asarray(x)
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return _np(y), _np(tape.gradient(y, xt, output_gradients=g))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        y, pull = jax.vjp(fn, jnp.asarray(x))
        (dx,) = pull(jnp.ones_like(y) if g is None else jnp.asarray(g, y.dtype))
        return _np(y), _np(dx)
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        gt = torch.ones_like(y) if g is None else torch.as_tensor(np.asarray(g), dtype=y.dtype)
        (dx,) = torch.autograd.grad(y, xt, gt)
        return _np(y), _np(dx)
    raise AssertionError(f"no gradient helper for the Keras {backend!r} backend")


def hvp_any(h, x, g):
    """Gradient of ``sum(g * dh/dx)`` w.r.t. ``x`` (a second derivative), as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt, gt = tf.constant(x), tf.constant(g)
        with tf.GradientTape() as outer:
            outer.watch(xt)
            with tf.GradientTape() as inner:
                inner.watch(xt)
                out = h(xt)
            s = tf.reduce_sum(gt * inner.gradient(out, xt))
        return _np(outer.gradient(s, xt))
    if backend == "jax":
        import jax

        return _np(jax.grad(lambda x: (g * jax.grad(h)(x)).sum())(x))
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        (first,) = torch.autograd.grad(h(xt), xt, create_graph=True)
        (second,) = torch.autograd.grad((torch.as_tensor(g) * first).sum(), xt)
        return _np(second)
    raise AssertionError(f"no gradient helper for the Keras {backend!r} backend")


@pytest.fixture
def vjp():
    return vjp_any


@pytest.fixture
def hvp():
    return hvp_any


@pytest.fixture
def backend():
    return keras.backend.backend()
