"""The custom_gradient contract (docs/guides/custom-gradients.md): what is TensorFlow's own.

The contract itself (keyword arguments, the gradient count, callables without
``__name__``, the compiler) is tested once for every adapter in
tests/conformance/test_custom_contract.py. Here: a tf.Variable argument, and the
frameworks' own documented custom-gradient examples with their figures (the same four in
every adapter's file).
"""

from __future__ import annotations

import math

import numpy as np

from backflip._testing import require_backend

tf = require_backend("tensorflow")

from backflip.tensorflow import custom_gradient  # noqa: E402


def _grads(f, *args):
    """The gradients of ``sum(f(*args))`` w.r.t. every argument (None where there is none)."""
    args = [tf.constant(a, tf.float32) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = tf.reduce_sum(f(*args))
    return tape.gradient(y, args)


# --- variables ----------------------------------------------------------------------


def test_variable_argument_receives_its_gradient():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, None)

    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(mul(v, 4.0))
    np.testing.assert_array_equal(tape.gradient(y, v), [4.0, 4.0])


# --- the frameworks' documented examples ----------------------------------------------


def test_pytorch_mulconstant_example():
    """PyTorch, "Extending PyTorch": MulConstant, ``y = x * c``; backward ``(g * c, None)``."""

    @custom_gradient
    def mul_constant(tensor, constant):
        return tensor * constant, lambda grad_output: (grad_output * constant, None)

    np.testing.assert_array_equal(mul_constant(tf.constant([1.0, 2.0, 3.0]), 2.5),
                                  [2.5, 5.0, 7.5])
    (gx,) = _grads(lambda t: mul_constant(t, 2.5), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(gx, [2.5] * 3)


def test_jax_clip_gradient_example():
    """JAX custom_vjp tutorial: ``clip_gradient(lo, hi, x)`` under ``vmap(grad(clip_sin))``.

    The tutorial plots sin(t) and the gradient of clip_sin over t = linspace(0, 10, 1000):
    cos(t) clipped to [-0.75, 0.75] (an elementwise function, so one tape gives every
    per-sample gradient).
    """

    @custom_gradient
    def clip_gradient(lo, hi, x):
        return x, lambda g: (None, None, tf.clip_by_value(g, lo, hi))

    def clip_sin(x):
        return tf.sin(clip_gradient(-0.75, 0.75, x))

    t = tf.linspace(0.0, 10.0, 1000)
    np.testing.assert_allclose(clip_sin(t), tf.sin(t))
    (grad,) = _grads(clip_sin, t)
    np.testing.assert_allclose(grad, tf.clip_by_value(tf.cos(t), -0.75, 0.75))
    assert (float(tf.reduce_max(grad)), float(tf.reduce_min(grad))) == (0.75, -0.75)
    assert float(tf.reduce_max(_grads(tf.sin, t)[0])) == 1.0  # the unclipped one reaches 1


def test_tensorflow_log1pexp_example():
    """TensorFlow's tf.custom_gradient docs: at x = 100 the stable gradient is 1.0, the naive one NaN."""

    @custom_gradient
    def log1pexp(x):
        e = tf.exp(x)
        return tf.math.log(1 + e), lambda upstream: upstream * (1 - 1 / (1 + e))

    (stable,) = _grads(log1pexp, 100.0)
    (naive,) = _grads(lambda x: tf.math.log(1 + tf.exp(x)), 100.0)
    assert float(stable) == 1.0 and math.isnan(float(naive))


def test_pytensor_opfromgraph_rescale_dy_example():
    """PyTensor's OpFromGraph docs: ``e = x + y * z`` with dy overridden to ``z * 2``;
    ``fn(2., 3., 4.)`` gives ``[1., 8., 3.]``."""

    @custom_gradient
    def e(x, y, z):
        return x + y * z, lambda g: (g, z * 2, g * y)

    assert [float(g) for g in _grads(e, 2.0, 3.0, 4.0)] == [1.0, 8.0, 3.0]
