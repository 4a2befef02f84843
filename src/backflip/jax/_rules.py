"""The JAX nonlinearity-rule primitive and the public rule functions.

``activation_rule`` is one ``jax.custom_vjp`` (reverse mode only): the forward is
JAX's own activation (``jax.nn.relu``, ``jax.nn.gelu``, ...), the backward
:func:`backflip._backend.rule_backward` with ``act'`` from ``jax.vjp`` of that
forward. ``backflip.jax.override_gradients`` recognises calls of it by this file.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from backflip._activations import FORWARDS
from backflip._backend import Namespace, rule_backward

__all__ = ["XP", "activation_rule"]

XP = Namespace(
    maximum=jnp.maximum, minimum=jnp.minimum, where=jnp.where, exp=jnp.exp,
    expm1=jnp.expm1, tanh=jnp.tanh, erf=jax.scipy.special.erf, sigmoid=jax.nn.sigmoid,
    softplus=jax.nn.softplus, norm=lambda g: jnp.sqrt(jnp.sum(jnp.square(g))),
    full=lambda v, like: jnp.asarray(v, dtype=jnp.result_type(like)),
    cast=lambda t, like: t.astype(jnp.result_type(like)),
)
"""JAX's array functions for the shared maths."""

#: JAX's own forwards (the rest come from backflip._activations over jax.numpy)
_NATIVE = {
    "relu": jax.nn.relu,
    "gelu": lambda x, approximate: jax.nn.gelu(x, approximate=approximate == "tanh"),
    "silu": jax.nn.silu,
    "softplus": lambda x, beta: jnp.logaddexp(0, beta * x) / beta,
}


def _forward(name: str, x: jax.Array, params: tuple) -> jax.Array:
    kw = dict(params)
    if name in _NATIVE:
        return _NATIVE[name](x, **kw)
    return FORWARDS[name](XP, x, **kw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _act(x: jax.Array, name: str, rule: Any, params: tuple) -> jax.Array:
    return _forward(name, x, params)


def _act_fwd(x, name, rule, params):
    y = _act(x, name, rule, params)
    return y, (x, y)


def _act_bwd(name, rule, params, res, g):
    x, y = res
    _, vjp = jax.vjp(lambda v: _forward(name, v, params), x)
    dx = rule_backward(XP, rule, lambda g: vjp(g)[0], x, y, g)
    return (jnp.asarray(dx).astype(g.dtype),)


_act.defvjp(_act_fwd, _act_bwd)


def activation_rule(x: jax.Array, name: str, rule: Any, params: tuple) -> jax.Array:
    """``y = act(x)`` with ``rule``'s backward (``rule`` hashable: a static argument)."""
    return _act(x, name, rule, params)
