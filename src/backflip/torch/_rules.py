"""Nonlinearities with a chosen backward rule (guided backprop, deconvnet, user rules).

The forward is the activation itself; the backward applies a rule of
:mod:`backflip.rules` (``x`` the input, ``y`` the output, ``g = dL/dy``):

* ``"vanilla"``: ``dL/dx = g * act'(x)`` (the default derivative);
* ``"guided"``: ``dL/dx = g * act'(x) * 1[g > 0]`` (Springenberg et al. 2015);
* ``"deconvnet"``: ``dL/dx = g * 1[g > 0]`` (Zeiler & Fergus 2014);
* a callable ``fn(x, y, g) -> dL/dx`` (tensors in, tensor out).

Covered activations and their parameters: ``relu``, ``leaky_relu(negative_slope=0.01)``,
``elu(alpha=1.0)``, ``gelu(approximate="none" | "tanh")``, ``silu``,
``softplus(beta=1.0, threshold=20.0)``. ``act'`` is the derivative of the forward that
is actually computed: for ``gelu(approximate="tanh")`` the derivative of the tanh
approximation, for ``softplus`` the constant 1 where ``beta * x > threshold`` (where
PyTorch's softplus turns linear). The NumPy reference :func:`backflip.rules.apply_rule`
uses the exact (erf) GELU and a softplus without threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.rules import check_rule, get_activation, resolve

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]

Rule = str | Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_grad(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        t = torch.tanh(inner)
        dinner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return cdf + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI


def _silu_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _softplus_grad(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    bx = beta * x
    return torch.where(bx > threshold, torch.ones_like(x), torch.sigmoid(bx))


# name -> (forward, derivative, default params); both take (x, **params).
_TORCH_ACTS: dict[str, tuple[Callable, Callable, dict]] = {
    "relu": (torch.relu, lambda x: (x > 0).to(x.dtype), {}),
    "leaky_relu": (
        lambda x, negative_slope=0.01: F.leaky_relu(x, negative_slope),
        lambda x, negative_slope=0.01: torch.where(
            x > 0, torch.ones_like(x), torch.full_like(x, negative_slope)
        ),
        {"negative_slope": 0.01},
    ),
    "elu": (
        lambda x, alpha=1.0: F.elu(x, alpha),
        lambda x, alpha=1.0: torch.where(
            x > 0, torch.ones_like(x), alpha * torch.exp(x.clamp(max=0))
        ),
        {"alpha": 1.0},
    ),
    "gelu": (
        lambda x, approximate="none": F.gelu(x, approximate=approximate),
        _gelu_grad,
        {"approximate": "none"},
    ),
    "silu": (F.silu, _silu_grad, {}),
    "softplus": (
        lambda x, beta=1.0, threshold=20.0: F.softplus(x, beta, threshold),
        _softplus_grad,
        {"beta": 1.0, "threshold": 20.0},
    ),
}


def _resolve(activation: str, params: dict) -> tuple[Callable, Callable, dict]:
    get_activation(activation)  # raises the shared, helpful error for unknown names
    fwd, grad, defaults = _TORCH_ACTS[activation]
    params = resolve(activation, "vanilla", params, defaults)
    if activation == "gelu" and params.get("approximate", "none") not in ("none", "tanh"):
        raise BackflipValueError(
            f"gelu's approximate must be 'none' or 'tanh'; got {params['approximate']!r}."
        )
    return fwd, grad, params


class _ActivationRule(torch.autograd.Function):
    """``y = act(x)``; ``dL/dx = rule(x, y, g)``.

    ``generate_vmap_rule``: under ``torch.func.vmap`` PyTorch runs forward and backward
    on the batched tensors (every op here, ``threshold_backward`` included, has a
    batching rule), so per-sample gradients apply the same rule.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, fwd, grad, params, rule):
        return fwd(x, **params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _fwd, grad, params, rule = inputs
        ctx.grad, ctx.params, ctx.rule = grad, params, rule
        ctx.relu = _fwd is torch.relu and not callable(rule)
        # ReLU's built-in rules need only the output (as PyTorch's own ReLU): keep no input
        ctx.save_for_backward(*((output,) if ctx.relu else (x, output)))

    @staticmethod
    def backward(ctx, g):
        rule = ctx.rule
        if ctx.relu:
            (y,) = ctx.saved_tensors
            if rule == "deconvnet":
                return g.clamp(min=0), None, None, None, None
            if rule == "guided":
                g = g.clamp(min=0)  # g * 1[y > 0] * 1[g > 0] == relu(g) * 1[y > 0]
            # one fused kernel, as PyTorch's own ReLU backward: g * 1[y > 0]
            return torch.ops.aten.threshold_backward(g, y, 0), None, None, None, None
        x, y = ctx.saved_tensors
        if callable(rule):
            out = rule(x, y, g)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                raise BackflipValueError(
                    f"a user gradient rule must return a tensor shaped like the input "
                    f"{tuple(x.shape)}; got {type(out).__name__} "
                    f"{tuple(getattr(out, 'shape', ()))}."
                )
            return out, None, None, None, None
        if rule == "deconvnet":
            return g.clamp(min=0), None, None, None, None
        if rule == "guided":
            g = g.clamp(min=0)  # g * act'(x) * 1[g > 0] == relu(g) * act'(x)
        return g * ctx.grad(x, **ctx.params), None, None, None, None


def activation_with_rule(
    x: torch.Tensor, activation: str = "relu", rule: Rule = "guided", **params: float | str
) -> torch.Tensor:
    """``y = act(x)`` forward; backward by ``rule`` (see :mod:`backflip.rules`).

    ``activation``: relu, leaky_relu, elu, gelu, silu or softplus (keyword ``params``
    as in ``torch.nn.functional``); ``rule``: ``"vanilla"``, ``"guided"``,
    ``"deconvnet"`` or ``fn(x, y, g) -> dL/dx``.

    >>> import torch
    >>> x = torch.tensor([1.0, 1.0, -1.0], requires_grad=True)
    >>> y = activation_with_rule(x, "relu", "guided")
    >>> y.backward(torch.tensor([2.0, -2.0, 2.0]))
    >>> x.grad
    tensor([2., 0., 0.])
    """
    if not isinstance(x, torch.Tensor):
        raise BackflipTypeError(
            f"activation_with_rule expects a torch.Tensor; got {type(x).__name__}. "
            "Wrap it with torch.as_tensor(...)."
        )
    check_rule(rule)
    fwd, grad, kw = _resolve(activation, params)
    return _ActivationRule.apply(x, fwd, grad, kw, rule)


def guided_relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU with the guided-backprop backward ``dL/dx = g * 1[x > 0] * 1[g > 0]``.

    >>> import torch
    >>> x = torch.tensor([1.0, -1.0], requires_grad=True)
    >>> guided_relu(x).backward(torch.tensor([-1.0, 1.0])); x.grad
    tensor([0., 0.])
    """
    return activation_with_rule(x, "relu", "guided")


def deconvnet_relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU with the deconvnet backward ``dL/dx = g * 1[g > 0]``.

    >>> import torch
    >>> x = torch.tensor([1.0, -1.0], requires_grad=True)
    >>> deconvnet_relu(x).backward(torch.tensor([-1.0, 1.0])); x.grad
    tensor([0., 1.])
    """
    return activation_with_rule(x, "relu", "deconvnet")
