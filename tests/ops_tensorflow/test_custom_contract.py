"""The custom_gradient contract (docs/guides/custom-gradients.md) in the TensorFlow adapter.

The same tests exist for every adapter (tests/ops_<backend>/test_custom_contract.py):
keyword arguments, the gradient count, callables without ``__name__``, the compiler,
and the frameworks' own documented custom-gradient examples with their figures.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from backflip._testing import require_backend

tf = require_backend("tensorflow")

from backflip import BackflipTypeError  # noqa: E402
from backflip.tensorflow import custom_gradient  # noqa: E402


def _grads(f, *args):
    """The gradients of ``sum(f(*args))`` w.r.t. every argument (None where there is none)."""
    args = [tf.constant(a, tf.float32) for a in args]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = tf.reduce_sum(f(*args))
    return tape.gradient(y, args)


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


scaled = custom_gradient(_scaled)
ONES = [1.0, 1.0]


# --- keyword arguments ----------------------------------------------------------------


def test_keyword_arguments_are_passed_and_get_no_gradient():
    x, bias = tf.constant([1.0, 2.0]), tf.constant([5.0, 6.0])
    np.testing.assert_array_equal(scaled(x, 3.0, bias=bias, power=2), [8.0, 18.0])
    gx, gbias = _grads(lambda x, b: scaled(x, 3.0, bias=b), [1.0, 2.0], [5.0, 6.0])
    np.testing.assert_array_equal(gx, [10.0, 10.0])
    assert gbias is None


def test_keyword_only_tensor_is_a_constant():
    # no positional tensor: fn runs as it is, nothing to differentiate here
    np.testing.assert_array_equal(scaled(2.0, 3.0, bias=tf.constant([5.0, 6.0])), [11.0, 12.0])


# --- the gradient count ---------------------------------------------------------------


def test_one_gradient_per_positional_argument_tensor_or_not():
    @custom_gradient
    def affine(w, x, name, b):  # name: a string argument, which gets None
        return w * x + b, lambda g: (g * x, g * w, None, None)

    gw, gx, gb = _grads(lambda w, x, b: affine(w, x, "layer", b), 2.0, 3.0, 1.0)
    assert (float(gw), float(gx), gb) == (3.0, 2.0, None)


def test_gradient_for_a_non_tensor_argument_is_discarded():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, g * x)  # c is a float: its gradient has no taker

    (gx,) = _grads(lambda x: mul(x, 4.0), ONES)
    np.testing.assert_array_equal(gx, [4.0, 4.0])


def test_variable_argument_receives_its_gradient():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, None)

    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(mul(v, 4.0))
    np.testing.assert_array_equal(tape.gradient(y, v), [4.0, 4.0])


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


def test_tf_function_with_keywords_partial_and_object():
    part = custom_gradient(functools.partial(_scaled, power=2))

    class Twice:
        def __call__(self, x, *, k):
            return x * k, lambda g: 2 * g

    twice = custom_gradient(Twice())

    @tf.function
    def grads(x, bias):
        with tf.GradientTape() as tape:
            tape.watch([x, bias])
            y = scaled(x, 3.0, bias=bias) + part(x, 1.0, bias=bias) + twice(x, k=5.0)
        return tape.gradient(y, [x, bias], unconnected_gradients="zero")

    gx, gbias = grads(tf.constant([1.0, 2.0]), tf.constant([0.5, 0.5]))
    np.testing.assert_array_equal(gx, [22.0, 22.0])
    np.testing.assert_array_equal(gbias, [0.0, 0.0])


def test_wrong_count_inside_tf_function_is_a_backflip_error():
    @custom_gradient
    def two(x, c):
        return x * c, lambda g: g

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = two(x, 3.0)
        return tape.gradient(y, x)

    with pytest.raises(BackflipTypeError, match=r"two returned 1 gradient\(s\); expected 2"):
        grads(tf.constant(ONES))


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
