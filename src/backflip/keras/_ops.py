"""Identity-forward gradient ops and ``custom_gradient`` on ``keras.ops``.

The same functions as :mod:`backflip.tensorflow`, written with ``keras.ops`` so
they run on the TensorFlow, JAX and PyTorch Keras backends; the maths is in
:mod:`backflip.rules`. λ and the scale factor are passed to the backward as an
extra (non-differentiated) input, so a λ held in a Keras variable can change
between steps without retracing a compiled train step.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from backflip._custom_contract import check_decoratee, wraps
from backflip._validate import check_clip_bounds, check_factor, check_max_norm
from backflip.keras._backend import (
    as_param,
    check_input,
    custom_vjp,
    forward_identity,
    require_gradients,
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
    """Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign).

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.ones(2, "float32"), np.array([2.0, -4.0], "float32")
    >>> vjp(lambda x: scale_gradient(x, 0.5), x, g)[1].tolist()
    [1.0, -2.0]
    """
    x = check_input(x, "scale_gradient")
    factor = as_param(factor, x.dtype, "factor", "scale_gradient", check_factor)
    return times_in_backward(x, factor, "scale_gradient")


def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> Any:
    """Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.ones(3, "float32"), np.array([2.0, -2.0, 0.25], "float32")
    >>> vjp(lambda x: clip_gradient(x, -0.5, 0.5), x, g)[1].tolist()
    [0.5, -0.5, 0.25]
    """
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
    """Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``, ``g = dL/dy``.

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.ones(2, "float32"), np.array([3.0, 4.0], "float32")
    >>> vjp(lambda x: clip_gradient_norm(x, 1.0), x, g)[1].tolist()
    [0.6..., 0.8...]
    """
    max_norm = check_max_norm(max_norm, "clip_gradient_norm")
    x = check_input(x, "clip_gradient_norm")

    def fn(x):
        def grad(g):
            norm = ops.sqrt(ops.sum(ops.square(g)))
            limit = ops.cast(max_norm, g.dtype)
            return g * ops.minimum(ops.cast(1.0, g.dtype), limit / ops.maximum(norm, limit))

        return forward_identity(x), grad

    return custom_vjp(fn, "clip_gradient_norm")(x)


@functools.cache
def _native_custom_gradient() -> Callable[..., Any] | None:
    """The custom_gradient of the backflip adapter for the Keras backend (None: no gradients)."""
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        return None
    return importlib.import_module(f"backflip.{backend}").custom_gradient


def _unwrap(a: Any) -> Any:
    return a.value if isinstance(a, keras.Variable) else a


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*args, **kwargs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)`` returns ``dL/dx``.

    The contract, the same in every backflip adapter, is in
    ``docs/guides/custom-gradients.md``: ``grad_fn`` returns one gradient per positional
    argument, tensor or not (``None`` for one that gets none); keyword arguments are
    constants. On each Keras backend this is that backend's own backflip adapter
    (:func:`backflip.tensorflow.custom_gradient`, :func:`backflip.jax.custom_gradient`,
    :func:`backflip.torch.custom_gradient`), so the contract, the errors and the
    compilers (``tf.function``, ``jax.jit``, ``torch.compile``) are the same; a tensor
    is that backend's tensor or a ``keras.Variable`` (passed to ``fn`` as its value).
    ``grad_fn`` takes only the upstream gradient, unlike ``keras.ops.custom_gradient``.

    >>> import numpy as np
    >>> from keras import ops
    >>> @custom_gradient
    ... def cube_with_linear_grad(x):
    ...     return x**3, lambda g: g * x
    >>> float(cube_with_linear_grad(ops.convert_to_tensor(np.float32(2.0))))
    8.0
    """
    name = check_decoratee(fn)
    native = _native_custom_gradient()
    op = native(fn) if native is not None else None

    @wraps(fn, name)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if op is None:
            require_gradients(f"custom_gradient function {name}")
        args = tuple(_unwrap(a) for a in args)
        return op(*args, **{k: _unwrap(v) for k, v in kwargs.items()})

    return wrapper
