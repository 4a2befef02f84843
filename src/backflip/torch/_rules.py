"""The PyTorch nonlinearity-rule primitive: one ``torch.autograd.Function``.

The forward is PyTorch's own activation (``torch.relu``, ``F.gelu``, ...); the backward
is :func:`backflip._backend.rule_backward` with ``act'`` from the shared table
(:mod:`backflip._activations`). ``act'`` is the derivative of the forward that is
actually computed: for ``gelu(approximate="tanh")`` that of the tanh approximation,
for ``softplus`` the constant 1 where ``beta * x > threshold`` (where PyTorch's
softplus turns linear). ReLU's built-in rules run as PyTorch's own ReLU backward does:
one fused kernel on the saved output.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import torch
import torch.nn.functional as F

from backflip._activations import DERIVATIVES
from backflip._backend import Namespace, rule_backward
from backflip._errors import BackflipValueError

__all__ = ["Rule", "activation_rule"]

Rule = str | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

XP = Namespace(
    maximum=torch.maximum, minimum=torch.minimum, where=torch.where, exp=torch.exp,
    expm1=torch.expm1, tanh=torch.tanh, erf=torch.erf, sigmoid=torch.sigmoid,
    softplus=F.softplus,
    norm=lambda g: torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32)),
    full=lambda v, like: torch.tensor(v, dtype=like.dtype, device=like.device),
    cast=lambda t, like: t.to(like.dtype),
)
"""PyTorch's array functions for the shared maths."""

FORWARDS: MappingProxyType[str, Callable[..., torch.Tensor]] = MappingProxyType({
    "relu": torch.relu,
    "leaky_relu": lambda x, negative_slope: F.leaky_relu(x, negative_slope),
    "elu": lambda x, alpha: F.elu(x, alpha),
    "gelu": lambda x, approximate: F.gelu(x, approximate=approximate),
    "silu": F.silu,
    "softplus": lambda x, beta, threshold: F.softplus(x, beta, threshold),
})
"""PyTorch's own forwards (what an overridden model computed before)."""


def _derivative(name: str, x: torch.Tensor, params: dict) -> torch.Tensor:
    if name == "softplus":  # PyTorch's softplus is linear beyond its threshold
        beta, threshold = params["beta"], params["threshold"]
        return torch.where(beta * x > threshold, torch.ones_like(x),
                           DERIVATIVES["softplus"](XP, x, beta=beta))
    return DERIVATIVES[name](XP, x, **params)


class _ActivationRule(torch.autograd.Function):
    """``y = act(x)``; ``dL/dx = rule(x, y, g)``.

    ``generate_vmap_rule``: under ``torch.func.vmap`` PyTorch runs forward and backward
    on the batched tensors (every op here, ``threshold_backward`` included, has a
    batching rule), so per-sample gradients apply the same rule.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, name, params, rule):
        return FORWARDS[name](x, **params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, name, params, rule = inputs
        ctx.name, ctx.params, ctx.rule = name, params, rule
        ctx.relu = name == "relu" and not callable(rule)
        # ReLU's built-in rules need only the output (as PyTorch's own ReLU): keep no input
        ctx.save_for_backward(*((output,) if ctx.relu else (x, output)))

    @staticmethod
    def backward(ctx, g):
        rule = ctx.rule
        if ctx.relu:
            (y,) = ctx.saved_tensors
            if rule == "deconvnet":
                return g.clamp(min=0), None, None, None
            if rule == "guided":
                g = g.clamp(min=0)  # g * 1[y > 0] * 1[g > 0] == relu(g) * 1[y > 0]
            # one fused kernel, as PyTorch's own ReLU backward: g * 1[y > 0]
            return torch.ops.aten.threshold_backward(g, y, 0), None, None, None
        x, y = ctx.saved_tensors
        dx = rule_backward(XP, rule, lambda g: g * _derivative(ctx.name, x, ctx.params), x, y, g)
        if callable(rule) and (not isinstance(dx, torch.Tensor) or dx.shape != x.shape):
            raise BackflipValueError(
                f"a user gradient rule must return a tensor shaped like the input "
                f"{tuple(x.shape)}; got {type(dx).__name__} {tuple(getattr(dx, 'shape', ()))}."
            )
        return dx, None, None, None


def activation_rule(x: torch.Tensor, name: str, rule: Rule, params: tuple) -> torch.Tensor:
    """``y = act(x)`` with ``rule``'s backward; ``params`` as sorted ``(name, value)`` pairs."""
    return _ActivationRule.apply(x, name, dict(params), rule)
