"""The custom_gradient contract (docs/guides/custom-gradients.md) in the PyTensor adapter.

The same tests exist for every adapter (tests/ops_<backend>/test_custom_contract.py):
keyword arguments, the gradient count, callables without ``__name__``, the compiler,
and the frameworks' own documented custom-gradient examples with their figures.
Every graph here is compiled with ``pytensor.function``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from backflip._testing import require_backend

pytensor = require_backend("pytensor")
pt = require_backend("pytensor.tensor")

from backflip import BackflipTypeError  # noqa: E402
from backflip.pytensor import custom_gradient  # noqa: E402

FAST = "FAST_COMPILE"
ONES = np.ones(2)


def _grads(f, *values):
    """The gradients of ``sum(f(*inputs))`` w.r.t. every input, compiled and evaluated."""
    inputs = [pt.vector() if np.ndim(v) else pt.scalar() for v in values]
    cost = f(*inputs).sum()
    fn = pytensor.function(inputs, pt.grad(cost, inputs), mode=FAST)
    return fn(*values)


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


scaled = custom_gradient(_scaled)


# --- keyword arguments ----------------------------------------------------------------


def test_keyword_arguments_are_passed_and_get_no_gradient():
    x, bias = pt.vector("x"), pt.vector("bias")
    y = scaled(x, 3.0, bias=bias, power=2)
    np.testing.assert_array_equal(
        pytensor.function([x, bias], y, mode=FAST)([1.0, 2.0], [5.0, 6.0]), [8.0, 18.0]
    )
    gx, gbias = _grads(lambda x, b: scaled(x, 3.0, bias=b), np.array([1.0, 2.0]), ONES)
    np.testing.assert_array_equal(gx, [10.0, 10.0])
    np.testing.assert_array_equal(gbias, [0.0, 0.0])  # a constant: zero gradient


def test_keyword_only_variable_is_a_constant():
    bias = pt.vector("bias")
    y = scaled(2.0, 3.0, bias=bias)  # no positional variable: inputs of the op are keywords
    np.testing.assert_array_equal(pytensor.function([bias], y, mode=FAST)([5.0, 6.0]),
                                  [11.0, 12.0])
    np.testing.assert_array_equal(pytensor.function([bias], pt.grad(y.sum(), bias),
                                                    mode=FAST)([5.0, 6.0]), [0.0, 0.0])


# --- the gradient count ---------------------------------------------------------------


def test_one_gradient_per_positional_argument_tensor_or_not():
    @custom_gradient
    def affine(w, x, name, b):  # name: a string argument, which gets None
        return w * x + b, lambda g: (g * x, g * w, None, None)

    gw, gx, gb = _grads(lambda w, x, b: affine(w, x, "layer", b), 2.0, 3.0, 1.0)
    assert (float(gw), float(gx), float(gb)) == (3.0, 2.0, 0.0)  # None: a zero gradient


def test_gradient_for_a_non_tensor_argument_is_discarded():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, g * x)  # c is a float: its gradient has no taker

    np.testing.assert_array_equal(_grads(lambda x: mul(x, 4.0), ONES)[0], [4.0, 4.0])


def test_shared_variable_receives_its_gradient():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, None)

    v = pytensor.shared(np.array([1.0, 2.0]))
    fn = pytensor.function([], pt.grad(mul(v, 4.0).sum(), v), mode=FAST)
    np.testing.assert_array_equal(fn(), [4.0, 4.0])


@pytest.mark.parametrize(("grads", "n"), [(lambda g: (10.0 * g,), 1), (lambda g: (g, None, g), 3)])
def test_wrong_count_names_both_counts_and_the_rule(grads, n):
    @custom_gradient
    def two(x, c):
        return x * c, grads

    with pytest.raises(BackflipTypeError, match=(
        rf"two returned {n} gradient\(s\); expected 2, one per positional argument of this "
        r"call\. The rule: grad_fn returns one gradient per positional argument, tensor or "
        r"not.*keyword arguments are constants")):
        _grads(lambda x: two(x, 3.0), ONES)


# --- callables without __name__ -------------------------------------------------------


def test_partial_and_callable_object():
    part = custom_gradient(functools.partial(_scaled, bias=1.0))
    assert part.__name__ == "partial(_scaled)"
    np.testing.assert_array_equal(_grads(lambda x: part(x, 3.0), ONES)[0], [10.0, 10.0])

    class Halve:
        def __call__(self, x):
            return x / 2, lambda g: -g

    halve = custom_gradient(Halve())
    assert halve.__name__ == "test_partial_and_callable_object.<locals>.Halve object"
    np.testing.assert_array_equal(_grads(halve, ONES)[0], [-1.0, -1.0])

    bad = custom_gradient(functools.partial(lambda x, c, *, k: (x * c * k, lambda g: g), k=2.0))
    with pytest.raises(BackflipTypeError, match=r"partial\(<lambda>\) returned 1 .* expected 2"):
        _grads(lambda x: bad(x, 1.0), ONES)


# --- the compiler ---------------------------------------------------------------------


def test_pytensor_function_with_keywords_partial_and_object():
    part = custom_gradient(functools.partial(_scaled, power=2))

    class Twice:
        def __call__(self, x, *, k):
            return x * k, lambda g: 2 * g

    twice = custom_gradient(Twice())
    x, bias = pt.vector("x"), pt.vector("bias")
    y = scaled(x, 3.0, bias=bias) + part(x, 1.0, bias=bias) + twice(x, k=5.0)
    fn = pytensor.function([x, bias], [y, *pt.grad(y.sum(), [x, bias])])  # the default mode
    out, gx, gbias = fn([1.0, 2.0], [0.5, 0.5])
    np.testing.assert_allclose(out, [3.5 + 1.5 + 5.0, 6.5 + 4.5 + 10.0])
    np.testing.assert_array_equal(gx, [22.0, 22.0])
    np.testing.assert_array_equal(gbias, [0.0, 0.0])


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
