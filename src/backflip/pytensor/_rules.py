"""Nonlinearity gradient rules (guided backprop, deconvnet, user rules) for PyTensor.

The maths of every rule is in :mod:`backflip.rules`; here each activation has a
PyTensor forward and each (activation, rule, parameters, dtype, static shape) one
``OpFromGraph`` whose ``pullback`` applies the rule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
from pytensor.gradient import grad
from pytensor.tensor.variable import TensorVariable

from backflip.pytensor._params import check_input
from backflip.rules import resolve

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]

_FORWARD: dict[str, Callable[..., TensorVariable]] = {
    "relu": lambda x: pt.switch(pt.gt(x, 0), x, 0),
    "leaky_relu": lambda x, negative_slope: pt.switch(pt.gt(x, 0), x, negative_slope * x),
    "elu": lambda x, alpha: pt.switch(pt.gt(x, 0), x, alpha * pt.expm1(pt.minimum(x, 0))),
    "gelu": lambda x: 0.5 * x * (1 + pt.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * pt.sigmoid(x),
    "softplus": lambda x, beta: pt.softplus(beta * x) / beta,
}


@functools.lru_cache(maxsize=256)
def _rule_op(
    name: str, rule: Any, params: tuple, dtype: str, shape: tuple[int | None, ...]
) -> OpFromGraph:
    kw = dict(params)
    x = pt.tensor(dtype=dtype, shape=shape)
    y = pt.cast(_FORWARD[name](x, **kw), dtype)

    def pullback(inputs, outputs, cotangents):
        (x,), (y,), (g,) = inputs, outputs, cotangents
        if callable(rule):
            dx = rule(x, y, g)
        elif rule == "deconvnet":
            dx = pt.switch(pt.gt(g, 0), g, 0)
        else:  # vanilla / guided: act' is elementwise, so g * act'(x) is a VJP
            if rule == "guided":
                g = pt.switch(pt.gt(g, 0), g, 0)
            y_again = _FORWARD[name](x, **kw)
            dx = grad(None, wrt=x, known_grads={y_again: g})
        return [pt.cast(dx, dtype)]

    return OpFromGraph([x], [y], pullback=pullback, name=f"backflip_{name}_{rule}", inline=True)


def activation_with_rule(
    x: Any,
    activation: str = "relu",
    rule: str | Callable[[Any, Any, Any], Any] = "guided",
    **params: float,
) -> TensorVariable:
    """``y = act(x)``, with ``dL/dx`` by ``rule`` (see :mod:`backflip.rules`).

    ``rule`` is ``"vanilla"``, ``"guided"``, ``"deconvnet"`` or ``fn(x, y, g) -> dL/dx``
    built from PyTensor ops. ``params`` are the activation's keyword parameters
    (``negative_slope``, ``alpha``, ``beta``).

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x, g = pt.vector("x"), np.array([2.0, -2.0, 2.0])
    >>> dx = pt.grad((activation_with_rule(x, "relu", "guided") * g).sum(), x)
    >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, 1.0, -1.0]))
    array([2., 0., 0.])
    """
    x = check_input(x, "activation_with_rule")
    kw = tuple(sorted(resolve(activation, rule, params).items()))
    return _rule_op(activation, rule, kw, x.dtype, x.type.shape)(x)


def guided_relu(x: Any) -> TensorVariable:
    """ReLU with the guided-backprop rule: ``dL/dx = g * 1[x > 0] * 1[g > 0]``.

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> dx = pt.grad(guided_relu(x).sum(), x)
    >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, -1.0]))
    array([1., 0.])
    """
    return activation_with_rule(x, "relu", "guided")


def deconvnet_relu(x: Any) -> TensorVariable:
    """ReLU with the deconvnet rule: ``dL/dx = g * 1[g > 0]`` (ignores ``x``).

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> dx = pt.grad(deconvnet_relu(x).sum(), x)
    >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, -1.0]))
    array([1., 1.])
    """
    return activation_with_rule(x, "relu", "deconvnet")
