"""The custom_gradient contract (docs/guides/custom-gradients.md): what is PyTensor's own.

The contract itself (keyword arguments, the gradient count, callables without
``__name__``, the compiler) is tested once for every adapter in
tests/conformance/test_custom_contract.py. Here: a shared variable, and the frameworks'
own documented custom-gradient examples with their figures (the same four in every
adapter's file). Every graph here is compiled with ``pytensor.function``.
"""

from __future__ import annotations

import numpy as np

from backflip._testing import require_backend

pytensor = require_backend("pytensor")
pt = require_backend("pytensor.tensor")

from backflip.pytensor import custom_gradient  # noqa: E402

FAST = "FAST_COMPILE"


# --- shared variables ---------------------------------------------------------------


def test_shared_variable_receives_its_gradient():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, None)

    v = pytensor.shared(np.array([1.0, 2.0]))
    fn = pytensor.function([], pt.grad(mul(v, 4.0).sum(), v), mode=FAST)
    np.testing.assert_array_equal(fn(), [4.0, 4.0])


# --- the frameworks' documented examples ----------------------------------------------


def test_pytorch_mulconstant_example():
    """PyTorch, "Extending PyTorch": MulConstant, ``y = x * c``; backward ``(g * c, None)``."""

    @custom_gradient
    def mul_constant(tensor, constant):
        return tensor * constant, lambda grad_output: (grad_output * constant, None)

    x = pt.vector("x")
    y = mul_constant(x, 2.5)
    out, gx = pytensor.function([x], [y, pt.grad(y.sum(), x)], mode=FAST)([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out, [2.5, 5.0, 7.5])
    np.testing.assert_array_equal(gx, [2.5] * 3)


def test_jax_clip_gradient_example():
    """JAX custom_vjp tutorial: ``clip_gradient(lo, hi, x)`` under ``vmap(grad(clip_sin))``.

    The tutorial plots sin(t) and the gradient of clip_sin over t = linspace(0, 10, 1000):
    cos(t) clipped to [-0.75, 0.75] (an elementwise function, so one gradient graph gives
    every per-sample gradient).
    """

    @custom_gradient
    def clip_gradient(lo, hi, x):
        return x, lambda g: (None, None, pt.clip(g, lo, hi))

    t = pt.vector("t")
    y = pt.sin(clip_gradient(-0.75, 0.75, t))
    fn = pytensor.function([t], [y, pt.grad(y.sum(), t), pt.grad(pt.sin(t).sum(), t)], mode=FAST)
    ts = np.linspace(0, 10, 1000)
    out, grad, plain = fn(ts)
    np.testing.assert_allclose(out, np.sin(ts))
    np.testing.assert_allclose(grad, np.clip(np.cos(ts), -0.75, 0.75))
    assert (grad.max(), grad.min()) == (0.75, -0.75)
    assert plain.max() == 1.0  # the unclipped gradient reaches 1


def test_tensorflow_log1pexp_example():
    """TensorFlow's tf.custom_gradient docs: at x = 100 the stable gradient is 1.0, the naive one NaN.

    (NaN without graph rewrites, FAST_COMPILE; PyTensor's default mode rewrites the naive
    log(1 + exp(x)) into softplus, whose gradient is finite.)
    """

    @custom_gradient
    def log1pexp(x):
        e = pt.exp(x)
        return pt.log(1 + e), lambda upstream: upstream * (1 - 1 / (1 + e))

    x = pt.scalar("x", dtype="float32")
    stable, naive = pt.grad(log1pexp(x), x), pt.grad(pt.log(1 + pt.exp(x)), x)
    got = pytensor.function([x], [stable, naive], mode=FAST)(np.float32(100.0))
    assert float(got[0]) == 1.0 and np.isnan(got[1])
    assert float(pytensor.function([x], stable)(np.float32(100.0))) == 1.0  # default mode


def test_pytensor_opfromgraph_rescale_dy_example():
    """PyTensor's OpFromGraph docs: ``e = x + y * z`` with dy overridden to ``z * 2``;
    ``fn(2., 3., 4.)`` gives ``[1., 8., 3.]``."""

    @custom_gradient
    def e(x, y, z):
        return x + y * z, lambda g: (g, z * 2, g * y)

    x, y, z = pt.scalars("xyz")
    fn = pytensor.function([x, y, z], pt.grad(e(x, y, z), [x, y, z]))
    assert [float(v) for v in fn(2.0, 3.0, 4.0)] == [1.0, 8.0, 3.0]
