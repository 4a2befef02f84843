"""Identity-forward gradient ops and ``custom_gradient`` for JAX.

The maths is in :mod:`backflip.rules`. Reversal and scaling are ``jax.custom_jvp``
rules (the tangent is multiplied by ``-lambd`` / ``factor``), so forward mode
(``jvp``, ``jacfwd``) follows the rule too and reverse mode (``grad``, ``vjp``,
``jacrev``) follows by transposition; the rule calls itself for its primal output,
so a second derivative through a reversal picks up ``lambd**2``. Clipping is not
linear in the cotangent, so ``clip_gradient`` and ``clip_gradient_norm`` are
``jax.custom_vjp`` rules: reverse mode only, and ``jax.jvp`` raises JAX's own
``TypeError`` ("can't apply forward-mode autodiff (jvp) to a custom_vjp function").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from backflip._custom_contract import (
    check_decoratee,
    gradients_tuple,
    split_output,
    tensor_positions,
    wraps,
)
from backflip._validate import check_clip_bounds, check_max_norm
from backflip.jax._params import as_factor, as_param, check_input

__all__ = [
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "reverse_gradient",
    "scale_gradient",
]


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


def reverse_gradient(x: Any, lambd: float | jax.Array = 1.0) -> jax.Array:
    """Gradient reversal (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.

    Forward mode reverses the tangent too. ``lambd`` (λ >= 0) may be a traced array:
    under ``jit`` a new λ every step does not recompile. A concrete λ is checked
    (NaN, inf or negative raise :class:`~backflip.BackflipValueError`); a traced λ
    cannot be checked.

    >>> import jax
    >>> jax.grad(lambda x: reverse_gradient(x, 0.5).sum())(jax.numpy.ones(2))
    Array([-0.5, -0.5], dtype=float32)
    """
    x = check_input(x, "reverse_gradient")
    return _times(x, -as_param(lambd, x.dtype, "lambd", "reverse_gradient"))


def scale_gradient(x: Any, factor: float | jax.Array) -> jax.Array:
    """Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign).

    >>> import jax
    >>> float(jax.grad(lambda x: scale_gradient(6.0 * x, 0.5) ** 2)(3.0))  # default 216
    108.0
    """
    x = check_input(x, "scale_gradient")
    return _times(x, as_factor(factor, x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _clip(x: jax.Array, lo: float | None, hi: float | None) -> jax.Array:
    return x


def _clip_fwd(x, lo, hi):
    return x, None


def _clip_bwd(lo, hi, _, g):
    return (jnp.clip(g, lo, hi),)


_clip.defvjp(_clip_fwd, _clip_bwd)


def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> jax.Array:
    """Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.

    Reverse mode only (``jax.custom_vjp``); ``jax.jvp`` raises JAX's TypeError.

    >>> import jax
    >>> jax.grad(lambda x: clip_gradient(x, -0.1, 0.1).sum())(jax.numpy.ones(2))
    Array([0.1, 0.1], dtype=float32)
    """
    lo, hi = check_clip_bounds(min, max, "clip_gradient")
    return _clip(check_input(x, "clip_gradient"), lo, hi)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _clip_norm(x: jax.Array, max_norm: float) -> jax.Array:
    return x


def _clip_norm_fwd(x, max_norm):
    return x, None


def _clip_norm_bwd(max_norm, _, g):
    norm = jnp.sqrt(jnp.sum(jnp.square(g)))
    scale = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1), 1)
    return ((g * scale).astype(g.dtype),)


_clip_norm.defvjp(_clip_norm_fwd, _clip_norm_bwd)


def clip_gradient_norm(x: Any, max_norm: float) -> jax.Array:
    """Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``.

    The norm is over the whole array; under ``vmap`` that is each mapped slice (each
    example), as ``vmap`` makes the backward per example. Reverse mode only.

    >>> import jax, jax.numpy as jnp
    >>> _, vjp = jax.vjp(lambda x: clip_gradient_norm(x, 1.0), jnp.zeros(2))
    >>> vjp(jnp.array([3.0, 4.0]))[0]
    Array([0.6, 0.8], dtype=float32)
    """
    max_norm = check_max_norm(max_norm, "clip_gradient_norm")
    return _clip_norm(check_input(x, "clip_gradient_norm"), max_norm)


def _is_array_tree(a: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(a)
    return bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*args, **kwargs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)`` returns ``dL/dx``.

    The contract, the same in every backflip adapter, is in
    ``docs/guides/custom-gradients.md``: ``grad_fn`` returns one gradient per positional
    argument, tensor or not (``None`` for one that gets none); keyword arguments are
    constants. Here a tensor is a JAX array or a pytree of them (tracers included; a
    Python float or NumPy array is a constant). Built on ``jax.custom_gradient`` (a
    ``custom_vjp``): reverse mode, ``jit`` and ``vmap`` work; forward mode raises JAX's
    TypeError. ``grad_fn`` may close over values of the forward pass but must not
    branch in Python on their values.

    >>> import jax
    >>> @custom_gradient
    ... def cube_with_linear_grad(x):
    ...     return x**3, lambda g: g * x
    >>> float(cube_with_linear_grad(2.0)), float(jax.grad(cube_with_linear_grad)(2.0))
    (8.0, 2.0)
    """
    name = check_decoratee(fn)

    @wraps(fn, name)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        positions = tensor_positions(args, _is_array_tree)
        keys = tuple(k for k, v in kwargs.items() if _is_array_tree(v))
        if not positions and not keys:  # nothing to differentiate
            return split_output(fn(*args, **kwargs), name)[0]

        # The arrays are the op's inputs (a custom_vjp must not close over tracers);
        # keyword arrays get a zero cotangent, constants stay in the closure.
        def op(*arrays: Any) -> tuple[Any, Callable[..., Any]]:
            full = list(args)
            for i, a in zip(positions, arrays, strict=False):
                full[i] = a
            kw = {**kwargs, **dict(zip(keys, arrays[len(positions) :], strict=True))}
            y, grad_fn = split_output(fn(*full, **kw), name)

            def rule(g: Any) -> tuple[Any, ...]:
                grads = gradients_tuple(grad_fn(g), len(args), name)
                return (*(grads[i] for i in positions), *(None for _ in keys))

            return y, rule

        arrays = (*(args[i] for i in positions), *(kwargs[k] for k in keys))
        return jax.custom_gradient(op)(*arrays)

    return wrapper
