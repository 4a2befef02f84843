"""Every row of backflip.conformance.CASES through the torch API."""

from __future__ import annotations

import numpy as np
import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip.conformance import CASES, MLP_WEIGHTS, Case, case_ids  # noqa: E402
from backflip.torch import (  # noqa: E402
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    override_gradients,
    reverse_gradient,
    scale_gradient,
)


def _mlp() -> torch.nn.Module:
    """The conformance network (backflip.conformance.mlp) as nn.Linear and nn.ReLU modules."""
    w1, b1, w2, b2 = (torch.from_numpy(w) for w in MLP_WEIGHTS)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.ReLU()
    ).double()
    with torch.no_grad():
        for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
            layer.weight.copy_(w.T)
            layer.bias.copy_(b)
    return net


@custom_gradient
def _cube(x):
    return x**3, lambda g: g * x


def _forward(case: Case):
    p = case.params
    ops = {
        "reverse": lambda x: reverse_gradient(x, p.get("lambd", 1.0)),
        "scale": lambda x: scale_gradient(x, p.get("factor", 1.0)),
        "clip": lambda x: clip_gradient(x, p.get("min"), p.get("max")),
        "clip_norm": lambda x: clip_gradient_norm(x, p.get("max_norm", 1.0)),
        "custom": _cube,
        "relu_guided": lambda x: activation_with_rule(x, "relu", "guided"),
        "relu_deconvnet": lambda x: activation_with_rule(x, "relu", "deconvnet"),
    }
    return ops[case.op]


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(case):
    x_np, g_np = case.inputs()
    y_want, dx_want = case.expected()
    x = torch.from_numpy(x_np).requires_grad_(True)
    g = torch.from_numpy(g_np)
    if case.op == "reverse_double":
        lambd = case.params["lambd"]
        (h1,) = torch.autograd.grad(
            (reverse_gradient(x, lambd) ** 3).sum() / 3, x, create_graph=True
        )
        (dx,) = torch.autograd.grad((g * h1).sum(), x)
        y = reverse_gradient(x, lambd)
    elif case.op == "override":
        net = _mlp()
        with override_gradients(net, case.rule()) as report:
            y = net(x)
            (dx,) = torch.autograd.grad(y, x, g)
        assert (report.seen, report.overridden) == (2, 2)
    else:
        y = _forward(case)(x)
        (dx,) = torch.autograd.grad(y, x, g)
    tol = case.tolerance()
    np.testing.assert_allclose(y.detach().numpy(), y_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx.numpy(), dx_want, rtol=tol, atol=tol)
