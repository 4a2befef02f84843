"""Framework-neutral checks of ``custom_gradient``, shared by every adapter.

The decorated function returns ``(output, grad_fn)``; ``grad_fn(g)`` returns one
gradient per tensor input (a bare gradient for one input). Each adapter wraps its
framework's mechanism around these three checks, so all raise the same errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backflip._errors import BackflipTypeError

__all__ = ["check_decoratee", "gradients_tuple", "split_output"]


def check_decoratee(fn: object) -> str:
    """Raise unless ``fn`` is callable; return its name for later messages."""
    if not callable(fn):
        raise BackflipTypeError(
            f"custom_gradient decorates a function; got {fn!r}. Use it as @custom_gradient."
        )
    return getattr(fn, "__name__", repr(fn))


def split_output(out: object, name: str) -> tuple[Any, Callable[..., Any]]:
    """Check that the decorated function returned ``(output, grad_fn)``; return both."""
    if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
        raise BackflipTypeError(
            f"the function {name} decorated by custom_gradient must return "
            f"(output, grad_fn); got {type(out).__name__}. Return e.g. (y, lambda g: g * x)."
        )
    return out


def gradients_tuple(grads: object, n_inputs: int, name: str) -> tuple[Any, ...]:
    """``grad_fn``'s result as a tuple with one gradient per input, or a clear error.

    >>> gradients_tuple(1.0, 1, "f")
    (1.0,)
    """
    grads = tuple(grads) if isinstance(grads, list | tuple) else (grads,)
    if len(grads) != n_inputs:
        raise BackflipTypeError(
            f"grad_fn of {name} must return one gradient per input; it got "
            f"{n_inputs} input(s) and returned {len(grads)} gradient(s)."
        )
    return grads
