"""The covered activations' forwards and derivatives, written once over a :class:`Namespace`.

The NumPy references are :data:`backflip.rules.ACTIVATIONS`; each backend evaluates
these formulas with its own array functions (``xp``) and may replace a forward by its
framework's own function (``jax.nn.relu``), so that an overridden model computes the
same forward as before.

``gelu`` takes ``approximate="none"`` (the erf form) or ``"tanh"`` (the tanh
approximation, ``jax.nn.gelu``'s and ``keras.ops.gelu``'s default); ``act'`` is the
derivative of the form that is computed.

>>> import numpy as np
>>> from backflip._backend import NUMPY
>>> FORWARDS["leaky_relu"](NUMPY, np.array([-2.0, 3.0]), negative_slope=0.1)
array([-0.2,  3. ])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backflip._errors import BackflipValueError

__all__ = ["DERIVATIVES", "EXTRA_PARAMS", "FORWARDS", "check_params"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_K = math.sqrt(2.0 / math.pi)  # the tanh-GELU's constant
_C = 0.044715


def _step(xp: Any, x: Any) -> Any:
    return xp.where(x > 0, xp.full(1.0, x), xp.full(0.0, x))


def _gelu(xp: Any, x: Any, approximate: str = "none") -> Any:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + xp.tanh(_K * (x + _C * x * x * x)))
    return 0.5 * x * (1.0 + xp.erf(x / _SQRT2))


def _gelu_grad(xp: Any, x: Any, approximate: str = "none") -> Any:
    if approximate == "tanh":
        t = xp.tanh(_K * (x + _C * x * x * x))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K * (1.0 + 3 * _C * x * x)
    return 0.5 * (1.0 + xp.erf(x / _SQRT2)) + x * xp.exp(-0.5 * x * x) * _INV_SQRT2PI


def _silu_grad(xp: Any, x: Any) -> Any:
    s = xp.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


#: name -> forward(xp, x, **params)
FORWARDS: dict[str, Callable[..., Any]] = {
    "relu": lambda xp, x: xp.maximum(x, xp.full(0.0, x)),
    "leaky_relu": lambda xp, x, negative_slope: xp.where(x > 0, x, negative_slope * x),
    "elu": lambda xp, x, alpha: xp.where(
        x > 0, x, alpha * xp.expm1(xp.minimum(x, xp.full(0.0, x)))),
    "gelu": _gelu,
    "silu": lambda xp, x: x * xp.sigmoid(x),
    "softplus": lambda xp, x, beta: xp.softplus(beta * x) / beta,
}

#: name -> derivative(xp, x, **params): the vanilla rule is ``g * derivative``
DERIVATIVES: dict[str, Callable[..., Any]] = {
    "relu": lambda xp, x: _step(xp, x),
    "leaky_relu": lambda xp, x, negative_slope: xp.where(
        x > 0, xp.full(1.0, x), xp.full(negative_slope, x)),
    "elu": lambda xp, x, alpha: xp.where(
        x > 0, xp.full(1.0, x), alpha * xp.exp(xp.minimum(x, xp.full(0.0, x)))),
    "gelu": _gelu_grad,
    "silu": _silu_grad,
    "softplus": lambda xp, x, beta: xp.sigmoid(beta * x),
}

#: parameters one backend's activation takes beyond the shared ones:
#: (backend name, activation) -> defaults
EXTRA_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("torch", "softplus"): {"threshold": 20.0},  # PyTorch's softplus turns linear there
}


def check_params(activation: str, params: dict) -> dict:
    """Raise on a parameter value no backend can compute; return ``params``.

    >>> check_params("gelu", {"approximate": "tanh"})
    {'approximate': 'tanh'}
    """
    if activation == "gelu" and params.get("approximate", "none") not in ("none", "tanh"):
        raise BackflipValueError(
            f"gelu's approximate must be 'none' or 'tanh'; got {params['approximate']!r}."
        )
    return params
