"""Small models and a hand-written guided/deconvnet reference for the saliency tests.

The models and the hand-written reference live in backflip.torch._testing, shared with
the tests of override_gradients and the rules (tests/ops_torch).
"""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")
nn = torch.nn
F = torch.nn.functional


from backflip.torch._testing import (  # noqa: E402  the shared models and reference
    MODELS,
    FunctionalCNN,
    MixedNet,
    hand_rule,
    mlp,
)


@pytest.fixture
def seeded():
    torch.manual_seed(0)


@pytest.fixture
def models():
    """name -> (factory, linear_parts, input shape)."""
    return dict(MODELS)


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
