"""Turn λ, factor and clip bounds into TensorFlow tensors, checking them first."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from backflip._errors import BackflipTypeError
from backflip._validate import check_factor, check_lambd

__all__ = ["as_factor", "as_param", "check_input"]


def check_input(x: object, where: str) -> tf.Tensor:
    """``x`` as a floating-point tensor; an integer or bool tensor has no gradient to change."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise BackflipTypeError(
            f"{where} needs a floating-point tensor; got dtype {x.dtype.name}. "
            "Integer and bool tensors have no gradient: cast first, e.g. tf.cast(x, tf.float32)."
        )
    return x


def as_param(
    value: object,
    dtype: tf.DType,
    name: str,
    where: str,
    check: Callable[[object, str], float] = check_lambd,
) -> tf.Tensor:
    """A 0-d tensor of ``dtype`` holding ``value`` (a number, a 0-d tensor or a tf.Variable).

    Python numbers and eager tensors are checked by ``check`` (the core's
    :func:`~backflip._validate.check_lambd` or ``check_factor``). Inside a
    ``tf.function`` a tensor or variable has no value yet, so only its dtype and
    shape are checked there; that is what lets a λ that changes every step run
    without retracing.
    """
    if isinstance(value, tf.Tensor | tf.Variable) or hasattr(value, "dtype"):
        t = tf.convert_to_tensor(value) if not isinstance(value, tf.Variable) else value
        if not t.dtype.is_floating:
            raise BackflipTypeError(
                f"`{name}` of {where} must be a float or a floating-point 0-d tensor; got a "
                f"tensor of dtype {t.dtype.name}. Pass e.g. tf.constant(0.5) or a float32 "
                "tf.Variable."
            )
        if t.shape.rank not in (None, 0):
            raise BackflipTypeError(
                f"`{name}` of {where} must be a 0-d tensor; got shape {t.shape}. "
                "Pass one number per call."
            )
        if tf.executing_eagerly():
            check(float(t.numpy() if hasattr(t, "numpy") else t), where)
        return tf.cast(t, dtype)
    return tf.constant(check(value, where), dtype)


def as_factor(value: object, dtype: tf.DType, where: str = "scale_gradient") -> tf.Tensor:
    """:func:`as_param` for a scale factor (any finite sign)."""
    return as_param(value, dtype, "factor", where, check_factor)
