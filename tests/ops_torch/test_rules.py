"""activation_with_rule matches the NumPy reference backflip.rules.apply_rule."""

from __future__ import annotations

import numpy as np
import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip._errors import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip.rules import ACTIVATIONS, RULES, apply_rule  # noqa: E402
from backflip.torch import (  # noqa: E402
    activation_with_rule,
    deconvnet_relu,
    guided_relu,
)

X = np.array([-2.5, -1.0, -0.3, 0.2, 0.7, 3.0], np.float64)
G = np.array([1.5, -0.5, 2.0, -1.0, 0.8, 1.0], np.float64)
PARAMS = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}, "softplus": {"beta": 2.0}}


def _torch_grad(activation, rule, **params):
    x = torch.tensor(X, requires_grad=True)
    y = activation_with_rule(x, activation, rule, **params)
    (gx,) = torch.autograd.grad(y, x, torch.tensor(G))
    return y.detach().numpy(), gx.numpy()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_matches_numpy_reference(activation, rule):
    params = PARAMS.get(activation, {})
    y, gx = _torch_grad(activation, rule, **params)
    kw = {**ACTIVATIONS[activation].params, **params}
    np.testing.assert_allclose(y, ACTIVATIONS[activation].forward(X, **kw), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        gx, apply_rule(rule, activation, X, G, **params), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_vanilla_equals_autograd(activation):
    x = torch.tensor(X, requires_grad=True)
    fwd = {
        "relu": torch.relu,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "elu": torch.nn.functional.elu,
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
        "softplus": torch.nn.functional.softplus,
    }[activation]
    (expected,) = torch.autograd.grad(fwd(x), x, torch.tensor(G))
    (got,) = torch.autograd.grad(activation_with_rule(x, activation, "vanilla"), x, torch.tensor(G))
    torch.testing.assert_close(got, expected)


def test_gelu_tanh_vanilla_equals_autograd():
    x = torch.tensor(X, requires_grad=True)
    g = torch.tensor(G)
    (expected,) = torch.autograd.grad(torch.nn.functional.gelu(x, approximate="tanh"), x, g)
    y = activation_with_rule(x, "gelu", "vanilla", approximate="tanh")
    (got,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(got, expected)


def test_softplus_threshold_linear_region():
    x = torch.tensor([30.0, 0.0], dtype=torch.float64, requires_grad=True)
    y = activation_with_rule(x, "softplus", "vanilla")
    (gx,) = torch.autograd.grad(y, x, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(gx, torch.tensor([1.0, 0.5], dtype=torch.float64))


def test_user_rule_gets_x_y_g():
    seen = {}

    def rule(x, y, g):
        seen.update(x=x, y=y, g=g)
        return 3 * g

    x = torch.tensor(X, requires_grad=True)
    (gx,) = torch.autograd.grad(activation_with_rule(x, "relu", rule), x, torch.tensor(G))
    torch.testing.assert_close(gx, 3 * torch.tensor(G))
    torch.testing.assert_close(seen["y"], torch.relu(torch.tensor(X)))
    np.testing.assert_allclose(gx.numpy(), apply_rule(lambda x, y, g: 3 * g, "relu", X, G))


def test_guided_and_deconvnet_relu_literals():
    x = torch.tensor([1.0, 1.0, -1.0, -1.0], requires_grad=True)
    g = torch.tensor([2.0, -2.0, 2.0, -2.0])
    (a,) = torch.autograd.grad(guided_relu(x), x, g)
    (b,) = torch.autograd.grad(deconvnet_relu(x), x, g)
    assert a.tolist() == [2.0, 0.0, 0.0, 0.0]
    assert b.tolist() == [2.0, 0.0, 2.0, 0.0]


def test_errors():
    x = torch.ones(3)
    with pytest.raises(BackflipValueError, match="no gradient rule covers the activation 'tanh'"):
        activation_with_rule(x, "tanh")
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidd'; use one of"):
        activation_with_rule(x, "relu", "guidd")
    with pytest.raises(BackflipTypeError, match="got unexpected \\['alpha'\\]"):
        activation_with_rule(x, "relu", "guided", alpha=1.0)
    with pytest.raises(BackflipValueError, match="gelu's approximate must be 'none' or 'tanh'"):
        activation_with_rule(x, "gelu", approximate="erf")
    with pytest.raises(BackflipTypeError, match=r"expects a torch\.Tensor; got list"):
        activation_with_rule([1.0], "relu")
    xr = torch.ones(3, requires_grad=True)
    y = activation_with_rule(xr, "relu", lambda x, y, g: g.sum())
    with pytest.raises(BackflipValueError, match="must return a tensor shaped like the input"):
        y.sum().backward()
