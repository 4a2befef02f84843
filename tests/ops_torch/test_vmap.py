"""torch.func.vmap(torch.func.grad(f)) through the nonlinearity rules: per-sample gradients.

Each case compares the vmapped per-sample gradient with a loop over the samples
(torch.autograd.grad, one sample at a time), and checks that the rule is still in
effect (it differs from PyTorch's own gradient), so vmap cannot silently fall back.
"""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip.torch import activation_with_rule, guided_relu, override_gradients  # noqa: E402

F = torch.nn.functional
nn = torch.nn

# activation -> (params, PyTorch's own function with those params)
ACTS = {
    "relu": ({}, torch.relu),
    "leaky_relu": ({"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    "elu": ({"alpha": 0.5}, lambda x: F.elu(x, 0.5)),
    "gelu": ({}, F.gelu),
    "gelu_tanh": ({"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    "silu": ({}, F.silu),
    "softplus": ({"beta": 2.0}, lambda x: F.softplus(x, 2.0)),
}


def _user_rule(x, y, g):
    return 2.0 * g * torch.sigmoid(x)  # not the derivative of any of them


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    w2 = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    xs = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    return w1, w2, xs


def _per_sample(loss, xs):
    """(vmap(grad(loss))(xs), the same by a loop of torch.autograd.grad)."""
    vmapped = torch.func.vmap(torch.func.grad(loss))(xs)
    looped = []
    for x in xs:
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x), x)
        looped.append(g)
    return vmapped, torch.stack(looped)


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet", "user"])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_with_rule_per_sample(data, name, rule):
    w1, w2, xs = data
    params, plain = ACTS[name]
    activation = name.removesuffix("_tanh")
    r = _user_rule if rule == "user" else rule

    def loss(x):  # upstream gradients of both signs reach the nonlinearity
        return (w2 @ activation_with_rule(w1 @ x, activation, r, **params)).sum()

    def default(x):
        return (w2 @ plain(w1 @ x)).sum()

    vmapped, looped = _per_sample(loss, xs)
    torch.testing.assert_close(vmapped, looped)
    want_default, _ = _per_sample(default, xs)
    if rule == "vanilla":
        torch.testing.assert_close(vmapped, want_default)
    else:
        assert not torch.allclose(vmapped, want_default), "the rule fell back to the default"


def test_guided_relu_per_sample(data):
    w1, w2, xs = data
    vmapped, looped = _per_sample(lambda x: (w2 @ guided_relu(w1 @ x)).sum(), xs)
    torch.testing.assert_close(vmapped, looped)
    # guided: dL/dh = g * 1[h > 0] * 1[g > 0] with g = w2.T @ 1, h = w1 @ x
    g = w2.sum(0)
    want = torch.stack([w1.T @ (g * (w1 @ x > 0) * (g > 0)) for x in xs])
    torch.testing.assert_close(vmapped, want)
    default = torch.func.vmap(torch.func.grad(lambda x: (w2 @ torch.relu(w1 @ x)).sum()))(xs)
    assert not torch.allclose(vmapped, default)


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_override_gradients_per_sample(rule):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 6), nn.GELU(),
                          nn.Linear(6, 2)).double()
    xs = torch.randn(5, 4, dtype=torch.float64)

    def loss(x):
        return model(x.unsqueeze(0)).sum()

    default = torch.func.vmap(torch.func.grad(loss))(xs)
    with override_gradients(model, rule) as report:
        vmapped, looped = _per_sample(loss, xs)
    torch.testing.assert_close(vmapped, looped)
    assert report.overridden == report.seen > 0 and report.complete
    assert not torch.allclose(vmapped, default), "the override fell back to the default"
