"""``custom_gradient``: define a backward pass next to the forward, as in TF, Keras 3 and JAX."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from backflip._custom_contract import (
    check_decoratee,
    gradients_tuple,
    split_output,
    tensor_positions,
    wraps,
)
from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = ["custom_gradient"]


class _Box:
    """Carries grad_fn from forward to setup_context as a non-tensor output."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn


def _is_tensor(a: object) -> bool:
    return isinstance(a, torch.Tensor)


def _call(fn: Callable, name: str, args: tuple, kwargs: dict) -> tuple[torch.Tensor, Callable]:
    y, grad_fn = split_output(fn(*args, **kwargs), name)
    if not isinstance(y, torch.Tensor):
        raise BackflipTypeError(
            f"the output of custom_gradient function {name} must be one "
            f"torch.Tensor; got {type(y).__name__}."
        )
    return y, grad_fn


class _Custom(torch.autograd.Function):
    """Inputs: ``fn, name, keys, *args, *kwarg_values``; outputs ``y, _Box``.

    The keyword arguments travel as inputs (not in a closure or a ``functools.partial``)
    so that ``torch.compile(fullgraph=True)`` and ``torch.func`` see every tensor.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(fn: Callable, name: str, keys: tuple[str, ...], *values: Any):
        n_args = len(values) - len(keys)
        # (no zip(strict=True): Dynamo's version of it fails on empty sequences)
        kwargs = {k: values[n_args + i] for i, k in enumerate(keys)}
        y, grad_fn = _call(fn, name, values[:n_args], kwargs)
        # Returning an input unchanged would make autograd treat y as that input.
        y = y.view_as(y) if any(y is v for v in values) else y
        return y, _Box(grad_fn)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _fn, ctx.name, keys, *values = inputs
        ctx.grad_fn, ctx.n_kwargs = output[1].fn, len(keys)
        ctx.n_args = len(values) - len(keys)
        ctx.shapes = [v.shape if _is_tensor(v) else None for v in values[: ctx.n_args]]

    @staticmethod
    def backward(ctx, g: torch.Tensor, _box_grad: None = None):
        grads = gradients_tuple(ctx.grad_fn(g), ctx.n_args, ctx.name)
        out: list[torch.Tensor | None] = []
        for pos, (grad, shape) in enumerate(zip(grads, ctx.shapes, strict=True)):
            if shape is None or grad is None:  # not a tensor: nothing to give it to
                out.append(None)
                continue
            if not isinstance(grad, torch.Tensor) or grad.shape != shape:
                got = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
                raise BackflipValueError(
                    f"grad_fn of custom_gradient function {ctx.name} returned gradient "
                    f"{pos} (for argument {pos}) of shape {got}; expected {tuple(shape)}, "
                    "the shape of that argument."
                )
            out.append(grad)
        return None, None, None, *out, *([None] * ctx.n_kwargs)


def custom_gradient(
    fn: Callable[..., tuple[torch.Tensor, Callable]],
) -> Callable[..., torch.Tensor]:
    """PyTorch's primitive behind :func:`backflip.torch.custom_gradient` (documented there).

    ``y`` is one tensor; a gradient must have its argument's shape (else
    :class:`~backflip.BackflipValueError`). The backward may use tensor ops, which makes
    it differentiable again (double backward applies ``grad_fn``'s own derivative).
    """
    name = check_decoratee(fn)

    @wraps(fn, name)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        tensors = [*(args[i] for i in tensor_positions(args, _is_tensor)),
                   *(v for v in kwargs.values() if _is_tensor(v))]
        if not tensors:  # nothing to differentiate, nor a tensor to expect back
            return split_output(fn(*args, **kwargs), name)[0]
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return _call(fn, name, args, kwargs)[0]  # no gradient needed
        return _Custom.apply(fn, name, tuple(kwargs), *args, *kwargs.values())[0]

    return wrapper
