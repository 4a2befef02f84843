"""Small models and a hand-written guided/deconvnet reference for the saliency tests.

tests/ops_torch/conftest.py has a copy of the models and the reference, for the tests of
override_gradients and the rules (conftest files cannot import each other).
"""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")
nn = torch.nn
F = torch.nn.functional


class FunctionalCNN(nn.Module):
    """A CNN whose nonlinearities are all functional ``F.relu`` calls (no nn.ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)

    def linear_parts(self):
        return [self.conv1, self.conv2, lambda h: self.fc1(h.flatten(1)), self.fc2]


class MixedNet(nn.Module):
    """nn.ReLU module (in place), F.relu, Tensor.relu and torch.relu in one forward."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(6, 6) for _ in range(4))
        self.fc5 = nn.Linear(6, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x).relu()
        x = torch.relu(self.fc4(x))
        return self.fc5(x)

    def linear_parts(self):
        return [self.fc1, self.fc2, self.fc3, self.fc4, self.fc5]


def mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))


def mlp_parts(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def hand_rule(parts, x, target, rule):
    """Backprop by hand through ``linear -> relu -> ... -> linear``, applying ``rule``.

    Each linear part's backward is its exact VJP (autograd of that part alone); each
    ReLU's backward is written out: guided ``g * 1[z > 0] * 1[g > 0]``, deconvnet
    ``g * 1[g > 0]``, vanilla ``g * 1[z > 0]``.
    """
    inputs, pre = [], []
    h = x.detach()
    for i, part in enumerate(parts):
        h = h.detach().requires_grad_(True)
        inputs.append(h)
        z = part(h)
        pre.append(z)
        h = torch.relu(z) if i < len(parts) - 1 else z
    g = torch.zeros_like(pre[-1])
    g[torch.arange(len(target)), target] = 1.0
    for i in reversed(range(len(parts))):
        if i < len(parts) - 1:
            z = pre[i].detach()
            if rule == "guided":
                g = g * (z > 0) * (g > 0)
            elif rule == "deconvnet":
                g = g * (g > 0)
            else:
                g = g * (z > 0)
        (g,) = torch.autograd.grad(pre[i], inputs[i], g)
    return g


@pytest.fixture
def seeded():
    torch.manual_seed(0)


@pytest.fixture
def models():
    """name -> (factory, linear_parts, input shape)."""
    return {
        "mlp": (mlp, mlp_parts, (4, 5)),
        "cnn": (FunctionalCNN, lambda m: m.linear_parts(), (4, 1, 8, 8)),
        "mixed": (MixedNet, lambda m: m.linear_parts(), (4, 6)),
    }


@pytest.fixture
def helpers():
    class H:
        pass

    H.hand_rule = staticmethod(hand_rule)
    H.module_hook_attribution = staticmethod(module_hook_attribution)
    H.FunctionalCNN = FunctionalCNN
    H.MixedNet = MixedNet
    H.mlp = staticmethod(mlp)
    return H


def module_hook_attribution(model, x, target, rule):
    """The module-hook approach (as Captum's GuidedBackprop/Deconvolution do it).

    A full backward hook on every ``nn.ReLU`` module returns ``relu(grad_input)``
    (guided) or ``relu(grad_output)`` (deconvnet). It cannot see ``F.relu`` calls.
    """

    def hook(module, grad_input, grad_output):
        grads = grad_output if rule == "deconvnet" else grad_input
        return tuple(torch.relu(g) for g in grads)

    handles = [
        m.register_full_backward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)
    ]
    try:
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
        (g,) = torch.autograd.grad(out[torch.arange(len(target)), target].sum(), x)
    finally:
        for h in handles:
            h.remove()
    return g
