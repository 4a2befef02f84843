"""Nonlinearity gradient rules (vanilla, guided, deconvnet, user) for TensorFlow 2.

Forward ``y = act(x)``; backward by the rule, as defined in :mod:`backflip.rules`
(the NumPy references this file must match). The activations and their
derivatives below mirror ``backflip.rules.ACTIVATIONS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from backflip import rules
from backflip.tensorflow._params import check_input

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)

# name -> (forward, derivative); each takes x and the activation's keyword parameters.
_TF: dict[str, tuple[Callable[..., tf.Tensor], Callable[..., tf.Tensor]]] = {
    "relu": (tf.nn.relu, lambda x: tf.cast(x > 0, x.dtype)),
    "leaky_relu": (
        lambda x, negative_slope: tf.where(x > 0, x, negative_slope * x),
        lambda x, negative_slope: tf.where(x > 0, tf.ones_like(x), negative_slope),
    ),
    "elu": (
        lambda x, alpha: tf.where(x > 0, x, alpha * tf.math.expm1(tf.minimum(x, 0.0))),
        lambda x, alpha: tf.where(x > 0, tf.ones_like(x), alpha * tf.exp(tf.minimum(x, 0.0))),
    ),
    "gelu": (
        lambda x: 0.5 * x * (1.0 + tf.math.erf(x / _SQRT2)),
        lambda x: 0.5 * (1.0 + tf.math.erf(x / _SQRT2)) + x * tf.exp(-0.5 * x * x) / _SQRT2PI,
    ),
    "silu": (
        lambda x: x * tf.sigmoid(x),
        lambda x: tf.sigmoid(x) * (1.0 + x * (1.0 - tf.sigmoid(x))),
    ),
    "softplus": (
        lambda x, beta: tf.math.softplus(beta * x) / beta,
        lambda x, beta: tf.sigmoid(beta * x),
    ),
}


def activation_with_rule(
    x: Any,
    activation: str = "relu",
    rule: str | Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor] = "guided",
    **params: float,
) -> tf.Tensor:
    """``y = act(x)`` whose backward follows ``rule`` (see :mod:`backflip.rules`).

    Args:
        x: a floating-point tensor.
        activation: one of ``backflip.rules.ACTIVATIONS`` (relu, leaky_relu, elu,
            gelu, silu, softplus).
        rule: "vanilla", "guided", "deconvnet", or ``fn(x, y, g) -> dL/dx``.
        **params: the activation's parameters (e.g. ``negative_slope``).

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 1.0, -1.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = activation_with_rule(x, "relu", "guided")
    >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
    array([2., 0., 0.], dtype=float32)
    """
    kw = rules.resolve(activation, rule, params)
    x = check_input(x, "activation_with_rule")
    forward, derivative = _TF[activation]

    @tf.custom_gradient
    def op(x):
        y = forward(x, **kw)

        def grad(g):
            if callable(rule):
                return rule(x, y, g)
            if rule == "vanilla":
                return g * derivative(x, **kw)
            positive = g > 0
            if rule == "guided":
                return tf.where(positive, g * derivative(x, **kw), tf.zeros_like(g))
            return tf.where(positive, g, tf.zeros_like(g))  # deconvnet

        return y, grad

    return op(x)


def guided_relu(x: Any) -> tf.Tensor:
    """``relu(x)`` with the guided-backprop backward ``dL/dx = 1[x > 0] * 1[g > 0] * g``.

    ``g = dL/dy``: only positive gradients pass, and only where the input was positive.

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 1.0, -1.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = guided_relu(x)
    >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
    array([2., 0., 0.], dtype=float32)
    """
    return activation_with_rule(x, "relu", "guided")


def deconvnet_relu(x: Any) -> tf.Tensor:
    """``relu(x)`` with the deconvnet backward ``dL/dx = 1[g > 0] * g`` (whatever the sign of x).

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 1.0, -1.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = deconvnet_relu(x)
    >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
    array([2., 0., 2.], dtype=float32)
    """
    return activation_with_rule(x, "relu", "deconvnet")
