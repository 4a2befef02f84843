"""backflip.tensorflow nonlinearity rules against the NumPy references of backflip.rules."""

import numpy as np
import pytest

from backflip import BackflipError
from backflip import rules as ref
from backflip._testing import require_backend

tf = require_backend("tensorflow")
bft = require_backend("backflip.tensorflow")

_X = np.array([-2.0, -0.5, -0.1, 0.3, 1.0, 2.5])
_G = np.array([1.0, -1.0, 2.0, -0.5, 1.5, -3.0])


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
@pytest.mark.parametrize("activation", sorted(ref.ACTIVATIONS))
def test_rule_matches_numpy_reference(vjp, activation, rule):
    x = tf.constant(_X)
    y, dx = vjp(lambda x: bft.activation_with_rule(x, activation, rule), x, tf.constant(_G))
    act = ref.ACTIVATIONS[activation]
    np.testing.assert_allclose(y.numpy(), act.forward(_X, **act.params), rtol=1e-12, atol=1e-12)
    expected = ref.apply_rule(rule, activation, _X, _G)
    np.testing.assert_allclose(dx.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ref.ACTIVATIONS))
def test_vanilla_equals_tensorflow_default(vjp, activation):
    """The rule's derivative is the true one: 'vanilla' must equal TF's own gradient."""
    x = tf.constant(_X)
    _, ours = vjp(lambda x: bft.activation_with_rule(x, activation, "vanilla"), x)
    _, theirs = vjp(_default(activation), x)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-12)


def _default(activation):
    return {
        "relu": tf.nn.relu,
        "leaky_relu": lambda x: tf.nn.leaky_relu(x, 0.01),
        "elu": tf.nn.elu,
        "gelu": lambda x: tf.nn.gelu(x, approximate=False),
        "silu": tf.nn.silu,
        "softplus": tf.nn.softplus,
    }[activation]


def test_guided_differs_from_default(vjp):
    x, g = tf.constant(_X), tf.constant(_G)
    _, guided = vjp(bft.guided_relu, x, g)
    _, default = vjp(tf.nn.relu, x, g)
    np.testing.assert_array_equal(guided.numpy(), [0, 0, 0, 0, 1.5, 0])
    assert not np.array_equal(guided.numpy(), default.numpy())


def test_params_and_user_rule(vjp):
    x, g = tf.constant(_X), tf.constant(_G)
    _, dx = vjp(lambda x: bft.activation_with_rule(x, "leaky_relu", "vanilla",
                                                   negative_slope=0.2), x, g)
    np.testing.assert_allclose(dx.numpy(), ref.apply_rule("vanilla", "leaky_relu", _X, _G,
                                                          negative_slope=0.2))
    y, dx = vjp(lambda x: bft.activation_with_rule(x, "elu", lambda x, y, g: g * y), x, g)
    np.testing.assert_allclose(dx.numpy(), _G * y.numpy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "tanh"}, r"no gradient rule covers the activation 'tanh'; covered: relu"),
        ({"rule": "smooth"}, r"unknown gradient rule 'smooth'; use one of vanilla, guided"),
        ({"activation": "elu", "beta": 2.0},
         r"activation 'elu' takes the parameters \['alpha'\]; got unexpected \['beta'\]"),
    ],
)
def test_rule_errors(kwargs, match):
    with pytest.raises(BackflipError, match=match):
        bft.activation_with_rule(tf.constant([1.0]), **kwargs)
