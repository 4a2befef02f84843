"""What JAX supplies to the shared backend layer (:mod:`backflip._backend`).

Reversal and scaling are a ``jax.custom_jvp`` (the tangent is multiplied by the
factor), so forward mode (``jvp``, ``jacfwd``) follows the rule and reverse mode
follows by transposition; the rule calls itself for its primal output, so a second
derivative through a reversal picks up ``lambd**2``. Clipping is not linear in the
cotangent, so the clipping ops, the nonlinearity rules and ``custom_gradient`` are
``jax.custom_vjp`` rules: reverse mode only (``jax.jvp`` raises JAX's own TypeError).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from backflip._backend import Backend, CustomCall
from backflip.jax._rules import XP, activation_rule

__all__ = ["JAX", "XP"]

@jax.custom_jvp
def _times(x: jax.Array, factor: jax.Array) -> jax.Array:
    """``y = x``; tangent and cotangent multiplied by ``factor``."""
    return x


@_times.defjvp
def _times_jvp(primals, tangents):
    x, factor = primals
    tx, _ = tangents  # factor is a hyper-parameter: its tangent is ignored
    # calling _times for the primal keeps the rule in force for higher derivatives
    return _times(x, factor), factor * tx


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _identity(x: jax.Array, backward: Any, static: tuple) -> jax.Array:
    return x


def _identity_fwd(x, backward, static):
    return x, None


def _identity_bwd(backward, static, _, g):
    return (backward(XP, g, *static).astype(g.dtype),)


_identity.defvjp(_identity_fwd, _identity_bwd)


def _is_array_tree(a: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(a)
    return bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)


class JaxBackend(Backend):
    name, word, article = "jax", "array", "an"
    tensor_type = "jax.Array"
    cast_hint = "cast first, e.g. x.astype(jnp.float32)"
    param_hint = "Pass e.g. 0.5 or jnp.float32(0.5)"
    param_dtypes = "number"
    xp = XP

    def to_tensor(self, x: Any) -> jax.Array:
        return jnp.asarray(x)

    def dtype(self, x: Any) -> str:
        return str(jnp.result_type(x))

    def concrete(self, t: Any) -> float | None:
        return None if isinstance(t, jax.core.Tracer) else float(t)

    def cast(self, t: Any, dtype: str) -> jax.Array:
        return jnp.asarray(t).astype(dtype)

    def constant(self, value: float, dtype: str) -> jax.Array:
        return jnp.asarray(value, dtype)

    def is_tensor(self, a: Any) -> bool:
        return _is_array_tree(a)

    def times(self, x: jax.Array, factor: jax.Array) -> jax.Array:
        return _times(x, factor)

    def identity_vjp(self, x: jax.Array, backward: Any, *static: Any) -> jax.Array:
        return _identity(x, backward, static)

    def activation(self, x: jax.Array, name: str, rule: Any, params: tuple) -> jax.Array:
        return activation_rule(x, name, rule, params)

    def custom(self, call: CustomCall) -> Any:
        # The arrays are the op's inputs (a custom_vjp must not close over tracers);
        # keyword arrays get a zero cotangent, constants stay in the closure.
        def op(*arrays: Any) -> Any:
            y, grad_fn = call.run(*arrays)
            return y, lambda g: call.gradients(grad_fn, g)

        return jax.custom_gradient(op)(*call.arrays)


JAX = JaxBackend()
