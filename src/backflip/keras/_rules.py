"""Nonlinearity gradient rules (vanilla, guided, deconvnet, user) on ``keras.ops``.

Forward ``y = act(x)``; backward by the rule of :mod:`backflip.rules`, whose NumPy
references these must match. The activations below mirror
``backflip.rules.ACTIVATIONS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from keras import ops

from backflip import rules
from backflip.keras._backend import check_input, custom_vjp

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _step(x: Any) -> Any:
    return ops.cast(ops.greater(x, 0), x.dtype)


# name -> (forward, derivative); each takes x and the activation's keyword parameters.
_OPS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "relu": (ops.relu, _step),
    "leaky_relu": (
        lambda x, negative_slope: ops.where(x > 0, x, negative_slope * x),
        lambda x, negative_slope: _step(x) + negative_slope * (1.0 - _step(x)),
    ),
    "elu": (
        lambda x, alpha: ops.where(x > 0, x, alpha * ops.expm1(ops.minimum(x, 0.0))),
        lambda x, alpha: ops.where(x > 0, ops.ones_like(x), alpha * ops.exp(ops.minimum(x, 0.0))),
    ),
    "gelu": (
        lambda x: 0.5 * x * (1.0 + ops.erf(x / _SQRT2)),
        lambda x: 0.5 * (1.0 + ops.erf(x / _SQRT2)) + x * ops.exp(-0.5 * x * x) / _SQRT2PI,
    ),
    "silu": (
        lambda x: x * ops.sigmoid(x),
        lambda x: ops.sigmoid(x) * (1.0 + x * (1.0 - ops.sigmoid(x))),
    ),
    "softplus": (
        lambda x, beta: ops.softplus(beta * x) / beta,
        lambda x, beta: ops.sigmoid(beta * x),
    ),
}


def activation_with_rule(
    x: Any,
    activation: str = "relu",
    rule: str | Callable[[Any, Any, Any], Any] = "guided",
    **params: float,
) -> Any:
    """``y = act(x)`` whose backward follows ``rule`` (see :mod:`backflip.rules`).

    ``activation``: relu, leaky_relu, elu, gelu, silu or softplus; ``rule``:
    "vanilla", "guided", "deconvnet" or ``fn(x, y, g) -> dL/dx``; ``params``: the
    activation's parameters (e.g. ``negative_slope``).

    >>> import numpy as np
    >>> np.asarray(activation_with_rule(np.array([-1.0, 2.0], "float32"))).tolist()
    [0.0, 2.0]
    """
    kw = rules.resolve(activation, rule, params)
    x = check_input(x, "activation_with_rule")
    forward, derivative = _OPS[activation]

    def fn(x):
        y = forward(x, **kw)

        def grad(g):
            if callable(rule):
                return rule(x, y, g)
            if rule == "vanilla":
                return g * derivative(x, **kw)
            if rule == "guided":
                return ops.where(g > 0, g * derivative(x, **kw), ops.zeros_like(g))
            return ops.where(g > 0, g, ops.zeros_like(g))  # deconvnet

        return y, grad

    return custom_vjp(fn, "activation_with_rule")(x)


def guided_relu(x: Any) -> Any:
    """``relu(x)`` with the guided-backprop backward ``dL/dx = 1[x > 0] * 1[g > 0] * g``.

    ``g = dL/dy``: only positive gradients pass, and only where the input was positive.

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.array([1.0, 1.0, -1.0], "float32"), np.array([2.0, -2.0, 2.0], "float32")
    >>> vjp(guided_relu, x, g)[1].tolist()
    [2.0, 0.0, 0.0]
    """
    return activation_with_rule(x, "relu", "guided")


def deconvnet_relu(x: Any) -> Any:
    """``relu(x)`` with the deconvnet backward ``dL/dx = 1[g > 0] * g`` (whatever the sign of x).

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.array([1.0, 1.0, -1.0], "float32"), np.array([2.0, -2.0, 2.0], "float32")
    >>> vjp(deconvnet_relu, x, g)[1].tolist()
    [2.0, 0.0, 2.0]
    """
    return activation_with_rule(x, "relu", "deconvnet")
