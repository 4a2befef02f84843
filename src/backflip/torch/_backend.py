"""What PyTorch supplies to the shared backend layer (:mod:`backflip._backend`).

Identity-forward gradient ops: reverse, scale, clip, clip by norm.

Each op is a :class:`torch.autograd.Function` whose forward is ``y = x`` returned as a
view sharing ``x``'s storage (no copy, nothing saved for backward) and whose backward
applies one rule of :mod:`backflip.rules` to the upstream gradient ``g = dL/dy``:

=======================  ==============================================
op                       backward ``dL/dx``
=======================  ==============================================
``reverse_gradient``     ``-lambd * g``  (Ganin & Lempitsky 2015)
``scale_gradient``       ``factor * g``
``clip_gradient``        ``clamp(g, min, max)`` elementwise
``clip_gradient_norm``   ``g * min(1, max_norm / ||g||_2)`` (whole tensor)
=======================  ==============================================

The backward is built from differentiable tensor ops, so a second derivative applies the
rule again (through a reversal it picks up ``lambd**2``). The ops implement
``setup_context`` and ``generate_vmap_rule = True``, so :func:`torch.func.grad`,
:func:`torch.func.vmap` and :func:`torch.compile` work. Under ``vmap``,
``clip_gradient_norm`` takes the norm per sample.

``lambd`` / ``factor`` may be a Python number or a 0-d tensor. Under ``torch.compile`` a
Python number is first a constant of the compiled graph; a second value recompiles once
with a symbolic float (dynamo's automatic dynamic), checked by comparisons that become guards.
A 0-d tensor is a graph input, so changing its value in place never recompiles: prefer
it (or the modules) in compiled training loops. A tensor value is
validated eagerly (one host sync); while compiling the check is skipped so that the graph
does not break: the modules (:class:`~backflip.torch.GradientReversal`) validate in their
setters instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from backflip._backend import Backend, clip_backward, clip_norm_backward
from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._validate import check_lambd
from backflip.torch._custom import custom_gradient as _custom_gradient
from backflip.torch._rules import XP, activation_rule

__all__ = ["TORCH", "XP"]


Number = float | int | torch.Tensor


def check_input(x: object, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise BackflipTypeError(
            f"{where} expects a torch.Tensor; got {type(x).__name__}. "
            "Convert it with torch.as_tensor(x, dtype=torch.float32)."
        )
    if not (x.is_floating_point() or x.is_complex()):
        raise BackflipTypeError(
            f"{where} needs a floating-point tensor; got dtype {x.dtype}, which carries no "
            "gradient. Cast it first, e.g. x.float()."
        )


def _check_scalar(value: object, check, where: str) -> None:
    """Validate a number or 0-d tensor; skipped for tensors while compiling (no graph break)."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise BackflipTypeError(
                f"{where} takes a Python number or a 0-d tensor; got a tensor of shape "
                f"{tuple(value.shape)}. Pass e.g. torch.tensor(0.5)."
            )
        if torch.compiler.is_compiling():
            return
        value = value.item()
    elif torch.compiler.is_compiling():
        # maybe a symbolic float (dynamo's automatic dynamic): math.isfinite would break
        # the graph; these comparisons become guards, so a bad value is caught on retrace.
        if not _plausible(value, check):
            raise BackflipValueError(
                f"{where} got an invalid value while compiling (NaN, inf, or a negative "
                "lambd); call it eagerly to see the value, or use a module's setter."
            )
        return
    check(value, where)


def _plausible(value: float, check) -> bool:
    """Finite (and >= 0 for lambd) by comparisons that dynamo can trace as guards."""
    finite = value - value == 0  # False for nan and +-inf
    return bool(finite and (check is not check_lambd or value >= 0))


def _as_factor(value: Number, g: torch.Tensor, negate: bool) -> torch.Tensor | float:
    # Negate the scalar, not the gradient: one pass over g instead of two.
    if isinstance(value, torch.Tensor):
        value = value.to(dtype=g.dtype)
    return -value if negate else value


class _Scale(torch.autograd.Function):
    """``y = x``; ``dL/dx = factor * g`` (reverse is ``factor = -lambd``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, factor: Number, negate: bool) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.factor, ctx.negate = inputs

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g * _as_factor(ctx.factor, g, ctx.negate), None, None


class _Clip(torch.autograd.Function):
    """``y = x``; ``dL/dx = clamp(g, min, max)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.lo, ctx.hi = inputs

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g.clamp(ctx.lo, ctx.hi), None, None


class _ClipNorm(torch.autograd.Function):
    """``y = x``; ``dL/dx = g * min(1, max_norm / ||g||_2)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, max_norm: float) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.max_norm = inputs[1]

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        acc = torch.promote_types(g.dtype, torch.float32)  # half types: accumulate in float32
        norm = torch.linalg.vector_norm(g, dtype=acc)
        # norm == 0 gives inf, clamped to 1: a zero gradient stays zero.
        scale = (ctx.max_norm / norm).clamp(max=1.0)
        return g * scale.to(g.dtype), None


def _apply_scale(x: torch.Tensor, factor: torch.Tensor, negate: bool, where: str) -> torch.Tensor:
    """The op for a buffer that its module's setter has validated: no host sync per call."""
    check_input(x, where)
    return _Scale.apply(x, factor, negate)



class TorchBackend(Backend):
    """PyTorch: its own autograd Functions (views, fused kernels, vmap rules, compile guards)."""

    name = "torch"
    tensor_type = "torch.Tensor"
    xp = XP

    def check_input(self, x: Any, where: str) -> torch.Tensor:
        check_input(x, where)
        return x

    def dtype(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")

    def param(self, value: Any, dtype: str, name: str, where: str,
              check: Callable[[object, str], float] = check_lambd) -> Any:
        # the number or tensor as it is: a tensor stays a graph input under torch.compile
        _check_scalar(value, check, where)
        return value

    def times(self, x: torch.Tensor, factor: Any) -> torch.Tensor:
        return _Scale.apply(x, factor, False)

    def reverse(self, x: torch.Tensor, lambd: Any) -> torch.Tensor:
        # λ negated in the backward: nothing computed, allocated or saved in the forward
        return _Scale.apply(x, lambd, True)

    def identity_vjp(self, x: torch.Tensor, backward: Any, *static: Any) -> torch.Tensor:
        # the same maths as backflip._backend's, as one fused kernel each
        return _IDENTITY[backward].apply(x, *static)

    def activation(self, x: torch.Tensor, name: str, rule: Any, params: tuple) -> torch.Tensor:
        return activation_rule(x, name, rule, params)

    def wrap_custom(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        return _custom_gradient(fn)


_IDENTITY = {clip_backward: _Clip, clip_norm_backward: _ClipNorm}

TORCH = TorchBackend()
