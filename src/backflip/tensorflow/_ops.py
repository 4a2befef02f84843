"""Identity-forward gradient ops and ``custom_gradient`` for TensorFlow 2.

The maths of every op is in :mod:`backflip.rules`; here each is one
``tf.custom_gradient`` whose forward is ``tf.identity``. The backward is built
from differentiable ops, so a nested ``tf.GradientTape`` applies the rule again
(a second derivative through a reversal picks up ``lambd**2``). Every op works
eagerly and inside ``tf.function``; pass λ as a ``tf.Variable`` or tensor there so
that a new value does not retrace the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from backflip._custom_contract import (
    check_decoratee,
    gradients_tuple,
    split_output,
    tensor_positions,
    wraps,
)
from backflip._errors import BackflipTypeError
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


def _is_tensor(a: Any) -> bool:
    return tf.is_tensor(a) or isinstance(a, tf.Variable)


class _StagedTypeError(BackflipTypeError):
    """A BackflipTypeError that keeps its type when raised inside ``tf.function``.

    Autograph re-raises an error with its own class only where that class uses
    ``Exception.__init__``; any other class (a TypeError subclass) becomes a StagingError.
    """

    __init__ = Exception.__init__


def _staged(check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except BackflipTypeError as e:
        raise _StagedTypeError(str(e)) from None


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*args, **kwargs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)`` returns ``dL/dx``.

    The contract, the same in every backflip adapter, is in
    ``docs/guides/custom-gradients.md``: ``grad_fn`` returns one gradient per positional
    argument, tensor or not (``None`` for one that gets none); keyword arguments are
    constants. Here a tensor is a ``tf.Tensor`` or ``tf.Variable`` (a Python float or
    NumPy array is a constant). Built on ``tf.custom_gradient``; works eagerly and in
    ``tf.function``.

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

    @wraps(fn, name)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        positions = tensor_positions(args, _is_tensor)
        keys = tuple(k for k, v in kwargs.items() if _is_tensor(v))
        if not positions and not keys:  # nothing to differentiate
            return split_output(fn(*args, **kwargs), name)[0]

        # The tensors are the op's inputs (tf.custom_gradient takes no keywords in a
        # graph); keyword tensors get no gradient, constants stay in the closure.
        @tf.custom_gradient
        def op(*tensors):
            full = list(args)
            for i, t in zip(positions, tensors, strict=False):
                full[i] = t
            kw = {**kwargs, **dict(zip(keys, tensors[len(positions) :], strict=True))}
            y, grad_fn = _staged(split_output, fn(*full, **kw), name)

            def grad(g, variables=None):
                grads = _staged(gradients_tuple, grad_fn(g), len(args), name)
                grads = (*(grads[i] for i in positions), *(None for _ in keys))
                grads = grads if len(grads) > 1 else grads[0]
                # variables fn reads from its closure are constants too
                return (grads, [None] * len(variables)) if variables else grads

            return y, grad

        return op(*(args[i] for i in positions), *(kwargs[k] for k in keys))

    return wrapper
