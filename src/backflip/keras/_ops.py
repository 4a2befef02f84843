"""Identity-forward gradient ops and ``custom_gradient`` on ``keras.ops``.

The same functions as :mod:`backflip.tensorflow`, written with ``keras.ops`` so
they run on the TensorFlow, JAX and PyTorch Keras backends; the maths is in
:mod:`backflip.rules`. λ and the scale factor are passed to the backward as an
extra (non-differentiated) input, so a λ held in a Keras variable can change
between steps without retracing a compiled train step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from keras import ops

from backflip._custom import check_decoratee, split_output
from backflip._validate import check_clip_bounds, check_factor, check_max_norm
from backflip.keras._backend import (
    as_param,
    check_input,
    custom_vjp,
    forward_identity,
    times_in_backward,
)

__all__ = [
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "reverse_gradient",
    "scale_gradient",
]


def reverse_gradient(x: Any, lambd: Any = 1.0) -> Any:
    """Gradient reversal (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.

    ``lambd`` >= 0: a float, a 0-d tensor or a Keras variable. Any backend but numpy.

    >>> import numpy as np
    >>> y = reverse_gradient(np.ones(2, "float32"), 0.5)
    >>> np.asarray(y).tolist()
    [1.0, 1.0]
    """
    x = check_input(x, "reverse_gradient")
    lambd = as_param(lambd, x.dtype, "lambd", "reverse_gradient")
    return times_in_backward(x, ops.negative(lambd), "reverse_gradient")


def scale_gradient(x: Any, factor: Any) -> Any:
    """Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign)."""
    x = check_input(x, "scale_gradient")
    factor = as_param(factor, x.dtype, "factor", "scale_gradient", check_factor)
    return times_in_backward(x, factor, "scale_gradient")


def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> Any:
    """Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise."""
    lo, hi = check_clip_bounds(min, max, "clip_gradient")
    x = check_input(x, "clip_gradient")

    def fn(x):
        def grad(g):
            if lo is not None:
                g = ops.maximum(g, ops.cast(lo, g.dtype))
            if hi is not None:
                g = ops.minimum(g, ops.cast(hi, g.dtype))
            return g

        return forward_identity(x), grad

    return custom_vjp(fn, "clip_gradient")(x)


def clip_gradient_norm(x: Any, max_norm: float) -> Any:
    """Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``."""
    max_norm = check_max_norm(max_norm, "clip_gradient_norm")
    x = check_input(x, "clip_gradient_norm")

    def fn(x):
        def grad(g):
            norm = ops.sqrt(ops.sum(ops.square(g)))
            limit = ops.cast(max_norm, g.dtype)
            return g * ops.minimum(ops.cast(1.0, g.dtype), limit / ops.maximum(norm, limit))

        return forward_identity(x), grad

    return custom_vjp(fn, "clip_gradient_norm")(x)


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*xs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)`` returns ``dL/dx``.

    One signature on every Keras backend (``keras.ops.custom_gradient`` itself
    wants ``grad(*args, upstream=None)``): ``grad_fn`` takes the upstream gradient
    and returns one gradient per input (a bare tensor for one input).

    >>> import numpy as np
    >>> @custom_gradient
    ... def cube_with_linear_grad(x):
    ...     return x**3, lambda g: g * x
    >>> float(cube_with_linear_grad(np.float32(2.0)))
    8.0
    """
    name = check_decoratee(fn)

    def checked(*xs: Any) -> Any:
        out = split_output(fn(*xs), name)
        return out

    @functools.wraps(fn)
    def wrapper(*xs: Any) -> Any:
        return custom_vjp(checked, name)(*(ops.convert_to_tensor(x) for x in xs))

    return wrapper
