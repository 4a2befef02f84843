"""Nonlinearity gradient rules (guided backprop, deconvnet, user rules) for JAX.

The maths of every rule is in :mod:`backflip.rules`; here each activation has a
``jax.numpy`` forward and the rule is a ``jax.custom_vjp`` (reverse mode only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from backflip.jax._params import check_input
from backflip.rules import resolve

__all__ = ["activation_with_rule", "deconvnet_relu", "guided_relu"]

_FORWARD: dict[str, Callable[..., jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda x, negative_slope: jnp.where(x > 0, x, negative_slope * x),
    "elu": lambda x, alpha: jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0))),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
    "softplus": lambda x, beta: jnp.logaddexp(0, beta * x) / beta,
}


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _act(x: jax.Array, name: str, rule: Any, params: tuple) -> jax.Array:
    return _FORWARD[name](x, **dict(params))


def _act_fwd(x, name, rule, params):
    y = _act(x, name, rule, params)
    return y, (x, y)


def _act_bwd(name, rule, params, res, g):
    x, y = res
    _, vjp = jax.vjp(lambda v: _FORWARD[name](v, **dict(params)), x)
    if callable(rule):
        dx = rule(x, y, g)
    elif rule == "vanilla":
        (dx,) = vjp(g)
    elif rule == "guided":  # act' is elementwise: vjp(g * 1[g > 0]) = g * act'(x) * 1[g > 0]
        (dx,) = vjp(jnp.where(g > 0, g, 0))
    else:  # deconvnet
        dx = jnp.where(g > 0, g, 0)
    return (jnp.asarray(dx).astype(g.dtype),)


_act.defvjp(_act_fwd, _act_bwd)


def activation_with_rule(
    x: Any,
    activation: str = "relu",
    rule: str | Callable[[Any, Any, Any], Any] = "guided",
    **params: float,
) -> jax.Array:
    """``y = act(x)``, with ``dL/dx`` by ``rule`` (see :mod:`backflip.rules`).

    ``rule`` is ``"vanilla"``, ``"guided"``, ``"deconvnet"`` or ``fn(x, y, g) -> dL/dx``
    (it is a static argument of the ``custom_vjp``, so it must be hashable; functions and
    lambdas are).
    ``params`` are the activation's keyword parameters (``negative_slope``,
    ``alpha``, ``beta``). Reverse mode only.

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([1.0, 1.0, -1.0])
    >>> _, vjp = jax.vjp(lambda x: activation_with_rule(x, "relu", "guided"), x)
    >>> vjp(jnp.array([2.0, -2.0, 2.0]))[0]
    Array([2., 0., 0.], dtype=float32)
    """
    kw = tuple(sorted(resolve(activation, rule, params).items()))
    return _act(check_input(x, "activation_with_rule"), activation, rule, kw)


def guided_relu(x: Any) -> jax.Array:
    """ReLU with the guided-backprop rule: ``dL/dx = g * 1[x > 0] * 1[g > 0]``.

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda x: guided_relu(x).sum())(jnp.array([1.0, -1.0]))
    Array([1., 0.], dtype=float32)
    """
    return activation_with_rule(x, "relu", "guided")


def deconvnet_relu(x: Any) -> jax.Array:
    """ReLU with the deconvnet rule: ``dL/dx = g * 1[g > 0]`` (ignores ``x``).

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda x: deconvnet_relu(x).sum())(jnp.array([1.0, -1.0]))
    Array([1., 1.], dtype=float32)
    """
    return activation_with_rule(x, "relu", "deconvnet")
