"""``custom_gradient``: define a backward pass next to the forward, as in TF, Keras 3 and JAX."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = ["custom_gradient"]


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))


class _Box:
    """Carries grad_fn from forward to setup_context as a non-tensor output."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn


class _Custom(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(call: Callable, positions: tuple[int, ...], *args: Any):
        out = call(*args)
        if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
            raise BackflipTypeError(
                f"a custom_gradient function must return (output, grad_fn); "
                f"{call.__name__} returned {type(out).__name__}. End it with "
                "`return y, grad_fn` where grad_fn(upstream) returns the input gradients."
            )
        y, grad_fn = out
        if not isinstance(y, torch.Tensor):
            raise BackflipTypeError(
                f"the output of custom_gradient function {call.__name__} must be one "
                f"torch.Tensor; got {type(y).__name__}."
            )
        # Returning an input unchanged would make autograd treat y as that input.
        y = y.view_as(y) if any(y is args[i] for i in positions) else y
        return y, _Box(grad_fn)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        call, positions, *args = inputs
        ctx.grad_fn, ctx.positions, ctx.call = output[1].fn, positions, call
        ctx.shapes = [args[i].shape for i in positions]
        ctx.n_args = len(args)

    @staticmethod
    def backward(ctx, g: torch.Tensor, _box_grad: None = None):
        grads = ctx.grad_fn(g)
        if isinstance(grads, torch.Tensor) or grads is None:
            grads = (grads,)
        grads = tuple(grads)
        name = ctx.call.__name__
        if len(grads) != len(ctx.positions):
            raise BackflipValueError(
                f"grad_fn of custom_gradient function {name} returned {len(grads)} "
                f"gradient(s); expected {len(ctx.positions)}, one per tensor argument "
                f"(at positions {list(ctx.positions)}). Return a tuple with one gradient "
                "(or None) per tensor argument, in order."
            )
        out: list[torch.Tensor | None] = [None] * ctx.n_args
        for k, (pos, grad, shape) in enumerate(zip(ctx.positions, grads, ctx.shapes, strict=True)):
            if grad is not None and (not isinstance(grad, torch.Tensor) or grad.shape != shape):
                got = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
                raise BackflipValueError(
                    f"grad_fn of custom_gradient function {name} returned gradient {k} "
                    f"(for argument {pos}) of shape {got}; expected {tuple(shape)}, the "
                    "shape of that argument."
                )
            out[pos] = grad
        return None, None, *out


def custom_gradient(
    fn: Callable[..., tuple[torch.Tensor, Callable]],
) -> Callable[..., torch.Tensor]:
    """Decorator: ``fn(*args)`` returns ``(y, grad_fn)``; backward is ``grad_fn(dL/dy)``.

    ``grad_fn(g)`` returns one gradient (a tensor of the argument's shape, or ``None``)
    per positional tensor argument, in order (a single tensor when there is one).
    Non-tensor positional arguments and keyword arguments are passed through unchanged
    and receive no gradient. ``y`` must be one tensor. The backward may use tensor ops,
    which makes it differentiable again (double backward applies ``grad_fn``'s own
    derivative). It works under ``torch.func.grad``/``vmap`` (``setup_context`` form;
    ``grad_fn`` reaches the backward as a non-tensor output) and ``torch.compile``.
    A wrong number or shape of gradients raises
    :class:`~backflip.BackflipValueError` naming expected and got.

    >>> @custom_gradient
    ... def cube(x):
    ...     return x**3, lambda g: g * x  # deliberately not the derivative 3x²
    >>> x = torch.tensor([2.0], requires_grad=True)
    >>> cube(x).sum().backward()
    >>> x.grad
    tensor([2.])
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        positions = tuple(i for i, a in enumerate(args) if isinstance(a, torch.Tensor))
        call = functools.partial(fn, **kwargs) if kwargs else fn
        if kwargs:
            call.__name__ = _name(fn)  # type: ignore[attr-defined]
        return _Custom.apply(call, positions, *args)[0]

    return wrapper
