"""Turn inputs, λ and factors into JAX arrays, checking concrete values eagerly."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from backflip._errors import BackflipTypeError
from backflip._validate import check_factor, check_lambd

__all__ = ["as_param", "check_input"]


def check_input(x: object, where: str) -> jax.Array:
    """``x`` as a floating-point array; integer and bool arrays have no gradient to change."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise BackflipTypeError(
            f"{where} needs a floating-point array; got dtype {x.dtype}. Integer and bool "
            "arrays have no gradient: cast first, e.g. x.astype(jnp.float32)."
        )
    return x


def as_param(
    value: object,
    dtype: jnp.dtype,
    name: str,
    where: str,
    check: Callable[[object, str], float] = check_lambd,
) -> jax.Array:
    """A 0-d array of ``dtype`` holding ``value`` (a number or a 0-d array, maybe traced).

    A concrete value is checked by ``check`` (:func:`~backflip._validate.check_lambd`
    or ``check_factor``). A traced value (inside ``jit``/``vmap``/``grad``) has no value
    yet: only its dtype and shape are checked. That is what lets a λ that changes
    every step run under ``jit`` without recompiling.
    """
    if isinstance(value, bool) or (
        not hasattr(value, "dtype") and not isinstance(value, int | float)
    ):
        check(value, where)  # raises the core's BackflipTypeError naming the value
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating) and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise BackflipTypeError(
            f"`{name}` of {where} must be a float or a floating-point 0-d array; got dtype "
            f"{arr.dtype}. Pass e.g. 0.5 or jnp.float32(0.5)."
        )
    if arr.ndim != 0:
        raise BackflipTypeError(
            f"`{name}` of {where} must be a 0-d array; got shape {arr.shape}. "
            "Pass one number per call (vmap over a batch of λ if you need several)."
        )
    if not isinstance(arr, jax.core.Tracer):
        check(float(arr), where)
    return arr.astype(dtype)


def as_factor(value: object, dtype: jnp.dtype, where: str = "scale_gradient") -> jax.Array:
    """:func:`as_param` for a scale factor (any finite sign)."""
    return as_param(value, dtype, "factor", where, check_factor)
