"""Identity-forward gradient ops and ``custom_gradient`` for TensorFlow 2.

The maths of every op is in :mod:`backflip.rules`; here each is one
``tf.custom_gradient`` whose forward is ``tf.identity``. The backward is built
from differentiable ops, so a nested ``tf.GradientTape`` applies the rule again
(a second derivative through a reversal picks up ``lambd**2``). Every op works
eagerly and inside ``tf.function``; pass λ as a ``tf.Variable`` or tensor there so
that a new value does not retrace the function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from backflip._custom import check_decoratee, gradients_tuple, split_output
from backflip._validate import check_clip_bounds, check_max_norm
from backflip.tensorflow._params import as_factor, as_param, check_input

__all__ = [
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "reverse_gradient",
    "scale_gradient",
]


def _times(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    @tf.custom_gradient
    def op(x):
        return tf.identity(x), lambda g: factor * g

    return op(x)


def reverse_gradient(x: Any, lambd: float | tf.Tensor | tf.Variable = 1.0) -> tf.Tensor:
    """Gradient reversal (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.

    Args:
        x: a floating-point tensor.
        lambd: λ >= 0, a float, a 0-d tensor or a ``tf.Variable`` (use a tensor or a
            variable inside ``tf.function`` so a new λ does not retrace).

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = reverse_gradient(x, 0.5)
    >>> tape.gradient(y, x).numpy()
    array([-0.5, -0.5], dtype=float32)
    """
    x = check_input(x, "reverse_gradient")
    return _times(x, -as_param(lambd, x.dtype, "lambd", "reverse_gradient"))


def scale_gradient(x: Any, factor: float | tf.Tensor | tf.Variable) -> tf.Tensor:
    """Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign).

    >>> import tensorflow as tf
    >>> x = tf.constant(3.0)
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = scale_gradient(6.0 * x, 0.5) ** 2
    >>> float(tape.gradient(y, x))  # the default gradient is 216
    108.0
    """
    x = check_input(x, "scale_gradient")
    return _times(x, as_factor(factor, x.dtype))


def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> tf.Tensor:
    """Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = clip_gradient(x, -0.1, 0.1)
    >>> tape.gradient(y, x).numpy()
    array([0.1, 0.1], dtype=float32)
    """
    lo, hi = check_clip_bounds(min, max, "clip_gradient")
    x = check_input(x, "clip_gradient")

    @tf.custom_gradient
    def op(x):
        def grad(g):
            if lo is not None:
                g = tf.maximum(g, tf.constant(lo, g.dtype))
            if hi is not None:
                g = tf.minimum(g, tf.constant(hi, g.dtype))
            return g

        return tf.identity(x), grad

    return op(x)


def clip_gradient_norm(x: Any, max_norm: float) -> tf.Tensor:
    """Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``.

    The norm is over the whole tensor (``tf.clip_by_norm`` applied to ``g``).

    >>> import tensorflow as tf
    >>> x = tf.constant([0.0, 0.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = clip_gradient_norm(x, 1.0)
    >>> tape.gradient(y, x, output_gradients=tf.constant([3.0, 4.0])).numpy()
    array([0.6, 0.8], dtype=float32)
    """
    max_norm = check_max_norm(max_norm, "clip_gradient_norm")
    x = check_input(x, "clip_gradient_norm")

    @tf.custom_gradient
    def op(x):
        return tf.identity(x), lambda g: tf.clip_by_norm(g, tf.constant(max_norm, g.dtype))

    return op(x)


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*xs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)`` returns ``dL/dx``.

    ``grad_fn`` returns one gradient per tensor input (a bare tensor for one
    input). Built on ``tf.custom_gradient``, with errors that say what ``fn``
    returned when it breaks this contract.

    >>> import tensorflow as tf
    >>> @custom_gradient
    ... def cube_with_linear_grad(x):
    ...     return x**3, lambda g: g * x
    >>> x = tf.constant(2.0)
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = cube_with_linear_grad(x)
    >>> float(y), float(tape.gradient(y, x))  # the default gradient would be 12
    (8.0, 2.0)
    """
    name = check_decoratee(fn)

    @functools.wraps(fn)
    def wrapper(*xs: Any) -> Any:
        @tf.custom_gradient
        def op(*xs):
            y, grad_fn = split_output(fn(*xs), name)

            def grad(*gs):
                grads = grad_fn(*gs)
                grads = gradients_tuple(grads, len(xs), name)
                return grads if len(grads) > 1 else grads[0]

            return y, grad

        return op(*xs)

    return wrapper
