"""backflip.keras functional ops under the current Keras backend: numbers, checks, λ²."""

import math

import numpy as np
import pytest

from backflip import BackflipTypeError, BackflipValueError
from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
ops = keras.ops


def test_clip_identity_gradient_to_0_1(vjp):
    _, dx = vjp(lambda x: bfk.clip_gradient(x, -0.1, 0.1), np.float32(5.0), np.float32(1.0))
    assert float(dx) == pytest.approx(0.1)


def test_halving_gradient_of_6x_squared_gives_108_not_216(vjp):
    _, default = vjp(lambda x: (6.0 * x) ** 2, np.float32(3.0))
    _, halved = vjp(lambda x: bfk.scale_gradient(6.0 * x, 0.5) ** 2, np.float32(3.0))
    assert (float(default), float(halved)) == (216.0, 108.0)


@pytest.mark.parametrize("lambd", [0.0, 0.5, 2, "variable"])
def test_reverse_literal(vjp, lambd):
    if lambd == "variable":
        lambd = keras.Variable(0.25, trainable=False)
    value = float(lambd)
    x = np.array([1.0, -2.0, 3.0], "float32")
    y, dx = vjp(lambda x: bfk.reverse_gradient(x, lambd), x, np.array([1.0, 2.0, -4.0], "float32"))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_allclose(dx, [-value, -2 * value, 4 * value])


def test_double_backward_gives_lambd_squared(hvp, backend):
    lambd, x = 3.0, np.array([2.0, -1.0], "float32")
    second = hvp(lambda x: ops.sum(bfk.reverse_gradient(x, lambd) ** 3), x, np.ones(2, "float32"))
    np.testing.assert_allclose(second, 6 * lambd**2 * x)  # h'' = 6 λ² x
    if backend == "jax":  # a custom_jvp there, so forward mode reverses the tangent too
        import jax

        _, tangent = jax.jvp(lambda x: bfk.reverse_gradient(x, lambd), (x,), (np.ones_like(x),))
        np.testing.assert_allclose(np.asarray(tangent), [-lambd, -lambd])


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (-1.0, BackflipValueError, r"`lambd` of reverse_gradient must be finite and >= 0; got -1.0"),
        (math.nan, BackflipValueError, r"must be finite and >= 0; got nan"),
        (np.float32(math.inf), BackflipValueError, r"must be finite and >= 0; got inf"),
        (True, BackflipTypeError, r"must be a real number or a 0-d tensor; got True of type bool"),
        (np.int32(1), BackflipTypeError, r"floating-point 0-d tensor; got a tensor of dtype int32"),
        (np.ones(2, "float32"), BackflipTypeError, r"must be a 0-d tensor; got shape \(2,\)"),
    ],
)
def test_reverse_rejects_bad_lambd(bad, error, match):
    with pytest.raises(error, match=match):
        bfk.reverse_gradient(np.ones(1, "float32"), bad)


def test_rejects_integer_input_and_bad_params():
    with pytest.raises(BackflipTypeError, match=r"needs a floating-point tensor; got dtype int32"):
        bfk.reverse_gradient(np.ones(2, "int32"))
    with pytest.raises(BackflipTypeError, match=r"got a symbolic keras.Input .* use the layers"):
        bfk.reverse_gradient(keras.Input((2,)))
    with pytest.raises(BackflipValueError, match=r"`factor` of scale_gradient must be finite"):
        bfk.scale_gradient(np.ones(1, "float32"), math.inf)
    with pytest.raises(BackflipValueError, match=r"got both None"):
        bfk.clip_gradient(np.ones(1, "float32"))
    with pytest.raises(BackflipValueError, match=r"`max_norm` of clip_gradient_norm must be"):
        bfk.clip_gradient_norm(np.ones(1, "float32"), -1.0)


def test_clip_norm_and_one_sided_clip(vjp):
    g = np.array([3.0, 4.0], "float32")
    _, dx = vjp(lambda x: bfk.clip_gradient_norm(x, 1.0), np.zeros(2, "float32"), g)
    np.testing.assert_allclose(dx, [0.6, 0.8], rtol=1e-6)
    _, dx = vjp(lambda x: bfk.clip_gradient(x, max=3.5), np.zeros(2, "float32"), g)
    np.testing.assert_allclose(dx, [3.0, 3.5])


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu", "silu", "softplus"])
@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
def test_rules_match_numpy_reference(vjp, activation, rule):
    from backflip import rules

    x = np.array([-2.0, -0.5, 0.3, 2.5], "float32")
    g = np.array([1.0, -1.0, 2.0, -3.0], "float32")
    y, dx = vjp(lambda x: bfk.activation_with_rule(x, activation, rule), x, g)
    act = rules.ACTIVATIONS[activation]
    np.testing.assert_allclose(y, act.forward(x.astype(float)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, rules.apply_rule(rule, activation, x, g), rtol=1e-5, atol=1e-6)


def test_rule_errors_and_user_rule(vjp):
    with pytest.raises(BackflipValueError, match=r"no gradient rule covers the activation 'tanh'"):
        bfk.activation_with_rule(np.ones(1, "float32"), "tanh")
    with pytest.raises(BackflipValueError, match=r"unknown gradient rule 'smooth'"):
        bfk.activation_with_rule(np.ones(1, "float32"), "relu", "smooth")
    _, dx = vjp(lambda x: bfk.activation_with_rule(x, "relu", lambda x, y, g: 2 * g),
                np.array([-1.0, 1.0], "float32"))
    np.testing.assert_array_equal(dx, [2.0, 2.0])


def test_custom_gradient_two_inputs_and_errors():
    @bfk.custom_gradient
    def mul(a, b):
        return a * b, lambda g: (g * 10.0, g * 20.0)

    @bfk.custom_gradient
    def no_grad(x):
        return x

    assert float(ops.convert_to_numpy(mul(np.float32(2.0), np.float32(3.0)))) == 6.0
    with pytest.raises(BackflipTypeError, match=r"no_grad decorated by custom_gradient must"):
        no_grad(np.float32(1.0))
    with pytest.raises(BackflipTypeError, match=r"custom_gradient decorates a function"):
        bfk.custom_gradient(None)


def test_compiled_lambd_change_does_not_retrace(backend):
    """λ in a Keras variable (TF) or a traced argument (JAX) changes without a new trace."""
    traces = []
    lambd = keras.Variable(0.0, trainable=False)
    x = np.array([1.0, 2.0], "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def grad(x):
            traces.append(1)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = ops.sum(bfk.reverse_gradient(x, lambd))
            return tape.gradient(y, x)

        run = lambda: grad(tf.constant(x))  # noqa: E731
    elif backend == "jax":
        import jax

        @jax.jit
        def grad(x, lambd):
            traces.append(1)
            return jax.grad(lambda x: ops.sum(bfk.reverse_gradient(x, lambd)))(x)

        run = lambda: grad(x, lambd.value)  # noqa: E731
    else:  # PyTorch runs eagerly: nothing to retrace, the numbers must still follow λ
        import torch

        def run():
            xt = torch.tensor(x, requires_grad=True)
            return torch.autograd.grad(ops.sum(bfk.reverse_gradient(xt, lambd)), xt)[0]

    for value in (0.0, 0.5, 2.0):
        lambd.assign(value)
        np.testing.assert_allclose(ops.convert_to_numpy(run()), [-value, -value])
    if backend in ("tensorflow", "jax"):
        assert len(traces) == 1
