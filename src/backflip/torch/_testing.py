"""Small models with functional and module nonlinearities, and a hand-written reference.

Shared by the tests of the torch rules, ``override_gradients`` and the saliency maps:
``hand_rule`` computes guided / deconvnet attributions layer by layer by hand, the
reference every automatic method is checked against. Test support, not public API.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MODELS", "FunctionalCNN", "MixedNet", "hand_rule", "mlp", "mlp_parts",
           "override_input_grad"]


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


#: name -> (factory, linear_parts, input shape) of the models above
MODELS = {
    "mlp": (mlp, mlp_parts, (4, 5)),
    "cnn": (FunctionalCNN, lambda m: m.linear_parts(), (4, 1, 8, 8)),
    "mixed": (MixedNet, lambda m: m.linear_parts(), (4, 6)),
}


def override_input_grad(rule, w1, b1, w2, b2, x, cot):
    """``dL/dx`` of ``sum(cot * (relu(x @ w1 + b1) @ w2 + b2))`` under torch's
    ``override_gradients(net, rule)``, float64 NumPy in and out: the torch side of the
    other adapters' cross-framework override tests."""
    import numpy as np

    from backflip.torch import override_gradients

    net = nn.Sequential(nn.Linear(*w1.shape), nn.ReLU(), nn.Linear(*w2.shape)).double()
    with torch.no_grad():
        for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
            layer.weight.copy_(torch.from_numpy(np.asarray(w).T))
            layer.bias.copy_(torch.from_numpy(np.asarray(b)))
    xt = torch.from_numpy(np.asarray(x)).requires_grad_(True)
    with override_gradients(net, rule) as report:
        (net(xt) * torch.from_numpy(np.asarray(cot))).sum().backward()
    assert report.complete
    return xt.grad.numpy()
