"""The one ``custom_gradient`` contract, shared by every adapter.

Written down for users in ``docs/guides/custom-gradients.md``; each adapter wraps its
framework's mechanism around these helpers, so every backend counts the same way and
raises the same errors:

* ``fn(*args, **kwargs)`` returns ``(y, grad_fn)``; ``grad_fn(g)`` (``g = dL/dy``)
  returns **one gradient per positional argument, tensor or not, in order**; ``None``
  for any argument that gets no gradient; a bare gradient when there is exactly one
  positional argument (a tuple or list is always read as one gradient per argument).
* Positional arguments that are tensors of the framework receive their gradient; the
  gradient returned for any other positional argument (a Python number, a string, a
  NumPy array) is discarded, as there is nothing to give it to.
* Keyword arguments are constants: they are passed to ``fn`` unchanged and receive no
  gradient (grad_fn returns nothing for them).

The count depends only on how many positional arguments the call has, never on which
of them happen to be tensors (a Python float traced by ``jit`` or not), so one
``grad_fn`` is right in eager and compiled code alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from backflip._errors import BackflipTypeError

__all__ = [
    "RULE",
    "callable_name",
    "check_decoratee",
    "gradients_tuple",
    "split_output",
    "tensor_positions",
    "wraps",
]

RULE = (
    "grad_fn returns one gradient per positional argument, tensor or not, in order (None "
    "for one that gets no gradient; a bare gradient when there is one positional "
    "argument); keyword arguments are constants and get none "
    "(docs/guides/custom-gradients.md)"
)


def callable_name(fn: object) -> str:
    """A readable name for any callable, including ``functools.partial`` and objects.

    >>> import functools
    >>> callable_name(functools.partial(max, 1)), callable_name(callable_name)
    ('partial(max)', 'callable_name')
    """
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    if isinstance(fn, functools.partial):
        return f"partial({callable_name(fn.func)})"
    return f"{type(fn).__qualname__} object"


def check_decoratee(fn: object) -> str:
    """Raise unless ``fn`` is callable; return its name for later messages."""
    if not callable(fn):
        raise BackflipTypeError(
            f"custom_gradient decorates a function; got {fn!r}. Use it as @custom_gradient."
        )
    return callable_name(fn)


def wraps(fn: Callable[..., Any], name: str) -> Callable[[Callable[..., Any]], Any]:
    """``functools.wraps`` that also names the wrapper of a callable without ``__name__``."""

    def decorate(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        wrapper = functools.wraps(fn)(wrapper)
        if not hasattr(fn, "__name__"):
            wrapper.__name__ = wrapper.__qualname__ = name
        return wrapper

    return decorate


def split_output(out: object, name: str) -> tuple[Any, Callable[..., Any]]:
    """Check that the decorated function returned ``(output, grad_fn)``; return both."""
    if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
        raise BackflipTypeError(
            f"the function {name} decorated by custom_gradient must return "
            f"(output, grad_fn); got {type(out).__name__}. Return e.g. (y, lambda g: g * x)."
        )
    return out


def tensor_positions(args: tuple[Any, ...], is_tensor: Callable[[Any], bool]) -> tuple[int, ...]:
    """The positions of the positional arguments that receive a gradient.

    >>> tensor_positions((1.0, "a", [2.0]), lambda a: isinstance(a, list))
    (2,)
    """
    return tuple(i for i, a in enumerate(args) if is_tensor(a))


def gradients_tuple(grads: object, n_args: int, name: str) -> tuple[Any, ...]:
    """``grad_fn``'s result as a tuple with one gradient per positional argument.

    Raises :class:`~backflip.BackflipTypeError` naming both counts and the rule.

    >>> gradients_tuple(1.0, 1, "f"), gradients_tuple([1.0, None], 2, "f")
    ((1.0,), (1.0, None))
    """
    grads = tuple(grads) if isinstance(grads, list | tuple) else (grads,)
    if len(grads) != n_args:
        raise BackflipTypeError(
            f"grad_fn of custom_gradient function {name} returned {len(grads)} gradient(s); "
            f"expected {n_args}, one per positional argument of this call. The rule: {RULE}."
        )
    return grads
