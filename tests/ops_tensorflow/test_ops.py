"""backflip.tensorflow: literal gradients, λ checks, tf.function without retracing, λ²."""

import math

import numpy as np
import pytest

from backflip import BackflipTypeError, BackflipValueError
from backflip._testing import require_backend

tf = require_backend("tensorflow")
bft = require_backend("backflip.tensorflow")


# --- the TensorFlow examples users copy ---------------------------------------------------


def test_clip_identity_gradient_to_0_1(vjp):
    _, dx = vjp(lambda x: bft.clip_gradient(x, -0.1, 0.1), tf.constant(5.0), tf.constant(1.0))
    assert float(dx) == pytest.approx(0.1)


def test_halving_gradient_of_6x_squared_gives_108_not_216(vjp):
    _, default = vjp(lambda x: (6.0 * x) ** 2, tf.constant(3.0))
    _, halved = vjp(lambda x: bft.scale_gradient(6.0 * x, 0.5) ** 2, tf.constant(3.0))
    assert float(default) == 216.0
    assert float(halved) == 108.0


# --- reverse_gradient ---------------------------------------------------------------------


@pytest.mark.parametrize("lambd", [0.0, 0.5, 1, 3.0, tf.constant(2.0), tf.Variable(0.25)])
def test_reverse_literal(vjp, lambd):
    x = tf.constant([1.0, -2.0, 3.0])
    y, dx = vjp(lambda x: bft.reverse_gradient(x, lambd), x, tf.constant([1.0, 2.0, -4.0]))
    value = float(lambd.numpy()) if hasattr(lambd, "numpy") else float(lambd)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(dx.numpy(), [-value, -2 * value, 4 * value])


def test_reverse_keeps_dtype_float16(vjp):
    x = tf.constant([1.0, 2.0], tf.float16)
    y, dx = vjp(lambda x: bft.reverse_gradient(x, 0.5), x)
    assert y.dtype == dx.dtype == tf.float16
    np.testing.assert_array_equal(dx.numpy(), [-0.5, -0.5])


@pytest.mark.parametrize(
    "bad, match",
    [
        (-1.0, r"must be finite and >= 0; got -1.0"),
        (math.nan, r"must be finite and >= 0; got nan"),
        (math.inf, r"must be finite and >= 0; got inf"),
        (tf.constant(-0.5), r"must be finite and >= 0; got -0.5"),
        (tf.Variable(math.inf), r"must be finite and >= 0; got inf"),
    ],
)
def test_reverse_rejects_bad_lambd_values(bad, match):
    with pytest.raises(BackflipValueError, match=match):
        bft.reverse_gradient(tf.constant([1.0]), bad)


@pytest.mark.parametrize(
    "bad, match",
    [
        (True, r"`lambd` of reverse_gradient must be a real number .* got True of type bool"),
        ("0.5", r"must be a real number or a 0-d tensor; got '0.5'"),
        (tf.constant(1), r"floating-point 0-d tensor; got a tensor of dtype int32"),
        (tf.constant(True), r"got a tensor of dtype bool"),
        (tf.constant([0.5, 1.0]), r"must be a 0-d tensor; got shape \(2,\)"),
    ],
)
def test_reverse_rejects_bad_lambd_types(bad, match):
    with pytest.raises(BackflipTypeError, match=match):
        bft.reverse_gradient(tf.constant([1.0]), bad)


def test_integer_input_is_rejected():
    with pytest.raises(BackflipTypeError, match=r"needs a floating-point tensor; got dtype int32"):
        bft.reverse_gradient(tf.constant([1, 2]))


def test_double_backward_gives_lambd_squared():
    lambd, x = 3.0, tf.constant(2.0)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            h = bft.reverse_gradient(x, lambd) ** 3  # h' = -3 λ x², h'' = 6 λ² x
        first = inner.gradient(h, x)
    second = outer.gradient(first, x)
    assert float(first) == pytest.approx(-3 * lambd * 4.0)
    assert float(second) == pytest.approx(6 * lambd**2 * 2.0)


def test_tf_function_variable_lambd_does_not_retrace():
    lambd = tf.Variable(0.0)

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(bft.reverse_gradient(x, lambd))
        return tape.gradient(y, x)

    x = tf.constant([1.0, 2.0])
    results = []
    for value in (0.0, 0.5, 1.0, 2.0):
        lambd.assign(value)
        results.append(grad(x).numpy())
    np.testing.assert_allclose(results, [[-v, -v] for v in (0.0, 0.5, 1.0, 2.0)])
    assert grad.experimental_get_tracing_count() == 1


def test_tf_function_tensor_lambd_does_not_retrace():
    @tf.function
    def grad(x, lambd):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(bft.reverse_gradient(x, lambd))
        return tape.gradient(y, x)

    x = tf.constant([1.0])
    for value in (0.1, 0.2, 0.3):
        assert float(grad(x, tf.constant(value))[0]) == pytest.approx(-value)
    assert grad.experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    "op, expected",
    [
        (lambda x: bft.reverse_gradient(x, 2.0), [-2.0, 4.0]),
        (lambda x: bft.scale_gradient(x, -3.0), [-3.0, 6.0]),
        (lambda x: bft.clip_gradient(x, -1.0, 0.5), [0.5, -1.0]),
        (lambda x: bft.clip_gradient_norm(x, 1.0), [1 / math.sqrt(5), -2 / math.sqrt(5)]),
        (bft.guided_relu, [1.0, 0.0]),
        (bft.deconvnet_relu, [1.0, 0.0]),
        (bft.custom_gradient(lambda x: (x**3, lambda g: g * x)), [1.0, -2.0]),
    ],
)
def test_every_op_in_tf_function(op, expected):
    @tf.function
    def grad(x, g):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = op(x)
        return tape.gradient(y, x, output_gradients=g)

    dx = grad(tf.constant([1.0, 1.0]), tf.constant([1.0, -2.0]))
    np.testing.assert_allclose(dx.numpy(), expected, rtol=1e-6)


# --- scale / clip / clip_norm -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [(math.nan, r"`factor` of scale_gradient must be finite; got nan"),
     (tf.constant(math.inf), r"must be finite; got inf")],
)
def test_scale_rejects_non_finite(bad, match):
    with pytest.raises(BackflipValueError, match=match):
        bft.scale_gradient(tf.constant([1.0]), bad)


def test_scale_accepts_negative_and_variable(vjp):
    factor = tf.Variable(-2.0)
    _, dx = vjp(lambda x: bft.scale_gradient(x, factor), tf.constant([1.0]))
    assert float(dx[0]) == -2.0


@pytest.mark.parametrize(
    "lo, hi, match",
    [
        (None, None, r"needs at least one of `min` and `max`; got both None"),
        (0.5, -0.5, r"must be <= `max`; got min=0.5, max=-0.5. Swap them"),
        (math.nan, 1.0, r"`min` of clip_gradient must not be NaN"),
    ],
)
def test_clip_rejects_bad_bounds(lo, hi, match):
    with pytest.raises(BackflipValueError, match=match):
        bft.clip_gradient(tf.constant([1.0]), lo, hi)


def test_clip_one_sided(vjp):
    g = tf.constant([-5.0, 0.05, 5.0])
    _, dx = vjp(lambda x: bft.clip_gradient(x, max=0.1), tf.zeros(3), g)
    np.testing.assert_allclose(dx.numpy(), [-5.0, 0.05, 0.1])
    _, dx = vjp(lambda x: bft.clip_gradient(x, min=-0.1), tf.zeros(3), g)
    np.testing.assert_allclose(dx.numpy(), [-0.1, 0.05, 5.0])


def test_clip_norm_leaves_small_gradients_and_rejects_zero(vjp):
    _, dx = vjp(lambda x: bft.clip_gradient_norm(x, 10.0), tf.zeros(2), tf.constant([3.0, 4.0]))
    np.testing.assert_allclose(dx.numpy(), [3.0, 4.0])
    with pytest.raises(BackflipValueError, match=r"`max_norm` of clip_gradient_norm must be"):
        bft.clip_gradient_norm(tf.zeros(2), 0.0)


# --- custom_gradient ----------------------------------------------------------------------


def test_custom_gradient_two_inputs(vjp):
    @bft.custom_gradient
    def mul(a, b):
        return a * b, lambda g: (g * 10.0, g * 20.0)

    a, b = tf.constant(2.0), tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        y = mul(a, b)
    da, db = tape.gradient(y, [a, b])
    assert (float(y), float(da), float(db)) == (6.0, 10.0, 20.0)


def test_custom_gradient_errors():
    @bft.custom_gradient
    def no_grad(x):
        return x

    @bft.custom_gradient
    def two_grads(x):
        return x, lambda g: (g, g)

    with pytest.raises(BackflipTypeError, match=r"no_grad decorated by custom_gradient must return"):
        no_grad(tf.constant(1.0))
    x = tf.constant(1.0)
    with pytest.raises(BackflipTypeError, match=r"returned 2 gradient\(s\); expected 1"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = two_grads(x)
        tape.gradient(y, x)
    with pytest.raises(BackflipTypeError, match=r"custom_gradient decorates a function; got 3"):
        bft.custom_gradient(3)
