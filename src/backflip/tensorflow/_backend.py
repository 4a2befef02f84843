"""What TensorFlow 2 supplies to the shared backend layer (:mod:`backflip._backend`).

Each op is one ``tf.custom_gradient`` whose forward is ``tf.identity`` (or the
activation). The backward is built from differentiable ops, so a nested
``tf.GradientTape`` applies the rule again (a second derivative through a reversal
picks up ``lambd**2``). Every op works eagerly and inside ``tf.function``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import tensorflow as tf

from backflip._backend import Backend, CustomCall, Namespace
from backflip._errors import BackflipTypeError

__all__ = ["TF", "XP"]

XP = Namespace(
    maximum=tf.maximum, minimum=tf.minimum, where=tf.where, exp=tf.exp,
    expm1=tf.math.expm1, tanh=tf.tanh, erf=tf.math.erf, sigmoid=tf.sigmoid,
    softplus=tf.math.softplus, norm=lambda g: tf.sqrt(tf.reduce_sum(tf.square(g))),
    full=lambda v, like: tf.constant(v, like.dtype),
    cast=lambda t, like: tf.cast(t, like.dtype),
    relu=tf.nn.relu,
    relu_grad=lambda g, y: tf.raw_ops.ReluGrad(gradients=g, features=y),  # one fused op
)
"""TensorFlow's array functions for the shared maths."""


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


class TensorFlowBackend(Backend):
    name = "tensorflow"
    tensor_type = "tf.Tensor"
    cast_hint = "cast first, e.g. tf.cast(x, tf.float32)"
    param_hint = "Pass e.g. tf.constant(0.5) or a float32 tf.Variable"
    xp = XP
    native = MappingProxyType({"relu": tf.nn.relu})

    def to_tensor(self, x: Any) -> tf.Tensor:
        return tf.convert_to_tensor(x)

    def dtype(self, x: Any) -> str:
        return tf.as_dtype(x.dtype).name

    def ndim(self, t: Any) -> int | None:
        return tf.TensorShape(t.shape).rank

    def concrete(self, t: Any) -> float | None:
        if not tf.executing_eagerly():  # a graph tensor: no value yet
            return None
        return float(t.numpy() if hasattr(t, "numpy") else t)

    def cast(self, t: Any, dtype: str) -> tf.Tensor:
        return tf.cast(t, dtype)

    def constant(self, value: float, dtype: str) -> tf.Tensor:
        return tf.constant(value, dtype)

    def is_tensor(self, a: Any) -> bool:
        return tf.is_tensor(a) or isinstance(a, tf.Variable)

    def times(self, x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
        @tf.custom_gradient
        def op(x):
            return tf.identity(x), lambda g: factor * g

        return op(x)

    def identity_vjp(self, x: tf.Tensor, backward: Any, *static: Any) -> tf.Tensor:
        @tf.custom_gradient
        def op(x):
            return tf.identity(x), lambda g: backward(XP, g, *static)

        return op(x)

    def activation(self, x: tf.Tensor, name: str, rule: Any, params: tuple) -> tf.Tensor:
        kw = dict(params)

        @tf.custom_gradient
        def op(x):
            y = self.forward(name, x, kw)
            return y, lambda g: self.backward(name, rule, kw, x, y, g)

        return op(x)

    def custom(self, call: CustomCall) -> Any:
        # The tensors are the op's inputs (tf.custom_gradient takes no keywords in a
        # graph); keyword tensors get no gradient, constants stay in the closure.
        @tf.custom_gradient
        def op(*tensors):
            y, grad_fn = _staged(call.run, *tensors)

            def grad(g, variables=None):
                grads = _staged(call.gradients, grad_fn, g)
                grads = grads if len(grads) > 1 else grads[0]
                # variables fn reads from its closure are constants too
                return (grads, [None] * len(variables)) if variables else grads

            return y, grad

        return op(*call.arrays)


TF = TensorFlowBackend()
