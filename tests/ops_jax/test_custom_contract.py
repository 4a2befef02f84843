"""The custom_gradient contract (docs/guides/custom-gradients.md): what is JAX's own.

The contract itself (keyword arguments, the gradient count, callables without
``__name__``, the compiler) is tested once for every adapter in
tests/conformance/test_custom_contract.py. Here: the gradient count when jit traces a
float, and the frameworks' own documented custom-gradient examples with their figures
(the same four in every adapter's file).
"""

from __future__ import annotations

import math

import numpy as np

from backflip._testing import require_backend

jax = require_backend("jax")
jnp = jax.numpy

from backflip.jax import custom_gradient  # noqa: E402

ONES = jnp.ones(2)


def _grad(f, argnums=0):
    return jax.grad(lambda *a: f(*a).sum(), argnums=argnums)


# --- the gradient count ---------------------------------------------------------------


def test_count_is_the_same_when_a_float_is_traced():
    """jit makes the float ``c`` an array: the count (2) does not change with it."""

    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, None)

    eager = _grad(lambda x: mul(x, 4.0))(ONES)
    traced = jax.jit(_grad(mul))(ONES, 4.0)
    np.testing.assert_array_equal(eager, traced)
    np.testing.assert_array_equal(traced, [4.0, 4.0])


# --- the frameworks' documented examples ----------------------------------------------


def test_pytorch_mulconstant_example():
    """PyTorch, "Extending PyTorch": MulConstant, ``y = x * c``; backward ``(g * c, None)``."""

    @custom_gradient
    def mul_constant(tensor, constant):
        return tensor * constant, lambda grad_output: (grad_output * constant, None)

    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mul_constant(x, 2.5), [2.5, 5.0, 7.5])
    np.testing.assert_array_equal(_grad(lambda t: mul_constant(t, 2.5))(x), [2.5] * 3)


def test_jax_clip_gradient_example():
    """JAX custom_vjp tutorial: ``clip_gradient(lo, hi, x)`` under ``vmap(grad(clip_sin))``.

    The tutorial plots sin(t) and the gradient of clip_sin over t = linspace(0, 10, 1000):
    cos(t) clipped to [-0.75, 0.75].
    """

    @custom_gradient
    def clip_gradient(lo, hi, x):
        return x, lambda g: (None, None, jnp.clip(g, lo, hi))

    def clip_sin(x):
        return jnp.sin(clip_gradient(-0.75, 0.75, x))

    t = jnp.linspace(0, 10, 1000)
    np.testing.assert_allclose(clip_sin(t), jnp.sin(t))
    grad = jax.vmap(jax.grad(clip_sin))(t)
    np.testing.assert_allclose(grad, jnp.clip(jnp.cos(t), -0.75, 0.75))
    assert (float(grad.max()), float(grad.min())) == (0.75, -0.75)
    assert float(jax.vmap(jax.grad(jnp.sin))(t).max()) == 1.0  # the unclipped one reaches 1


def test_tensorflow_log1pexp_example():
    """TensorFlow's tf.custom_gradient docs: at x = 100 the stable gradient is 1.0, the naive one NaN."""

    @custom_gradient
    def log1pexp(x):
        e = jnp.exp(x)
        return jnp.log(1 + e), lambda upstream: upstream * (1 - 1 / (1 + e))

    x = jnp.float32(100.0)
    assert float(jax.grad(log1pexp)(x)) == 1.0
    assert math.isnan(float(jax.grad(lambda v: jnp.log(1 + jnp.exp(v)))(x)))


def test_pytensor_opfromgraph_rescale_dy_example():
    """PyTensor's OpFromGraph docs: ``e = x + y * z`` with dy overridden to ``z * 2``;
    ``fn(2., 3., 4.)`` gives ``[1., 8., 3.]``."""

    @custom_gradient
    def e(x, y, z):
        return x + y * z, lambda g: (g, z * 2, g * y)

    grads = jax.grad(e, argnums=(0, 1, 2))(2.0, 3.0, 4.0)
    assert [float(g) for g in grads] == [1.0, 8.0, 3.0]
