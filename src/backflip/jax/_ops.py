"""backflip's eight functions for JAX, from the shared layer (:mod:`backflip._backend`).

The primitives are in :mod:`backflip.jax._backend`; what is JAX's own is said in
each docstring after the shared text.
"""

from backflip._api import CORE_OPS
from backflip._backend import export
from backflip.jax._backend import JAX

__all__ = list(CORE_OPS)

_NOTES = {
    "reverse_gradient": """
        Forward mode (``jvp``, ``jacfwd``) reverses the tangent too; a traced λ under
        ``jit`` is a graph input.

        >>> import jax
        >>> jax.grad(lambda x: reverse_gradient(x, 0.5).sum())(jax.numpy.ones(2))
        Array([-0.5, -0.5], dtype=float32)
        """,
    "scale_gradient": """
        >>> import jax
        >>> float(jax.grad(lambda x: scale_gradient(6.0 * x, 0.5) ** 2)(3.0))  # default 216
        108.0
        """,
    "clip_gradient": """
        Reverse mode only (``jax.custom_vjp``); ``jax.jvp`` raises JAX's TypeError.

        >>> import jax
        >>> jax.grad(lambda x: clip_gradient(x, -0.1, 0.1).sum())(jax.numpy.ones(2))
        Array([0.1, 0.1], dtype=float32)
        """,
    "clip_gradient_norm": """
        Reverse mode only; under ``vmap`` the norm is each mapped slice's.

        >>> import jax, jax.numpy as jnp
        >>> _, vjp = jax.vjp(lambda x: clip_gradient_norm(x, 1.0), jnp.zeros(2))
        >>> vjp(jnp.array([3.0, 4.0]))[0]
        Array([0.6, 0.8], dtype=float32)
        """,
    "custom_gradient": """
        A tensor is a JAX array or a pytree of them (tracers included; a Python float or
        NumPy array is a constant). Built on ``jax.custom_gradient`` (a ``custom_vjp``):
        reverse mode, ``jit`` and ``vmap`` work; forward mode raises JAX's TypeError.
        ``grad_fn`` must not branch in Python on traced values.

        >>> import jax
        >>> @custom_gradient
        ... def cube_with_linear_grad(x):
        ...     return x**3, lambda g: g * x
        >>> float(cube_with_linear_grad(2.0)), float(jax.grad(cube_with_linear_grad)(2.0))
        (8.0, 2.0)
        """,
    "activation_with_rule": """
        The forward is JAX's own (``jax.nn.relu``, ``jax.nn.gelu``, ...); ``rule`` is a
        static argument of a ``custom_vjp``, so it must be hashable (functions are).
        Reverse mode only.

        >>> import jax, jax.numpy as jnp
        >>> x = jnp.array([1.0, 1.0, -1.0])
        >>> _, vjp = jax.vjp(lambda x: activation_with_rule(x, "relu", "guided"), x)
        >>> vjp(jnp.array([2.0, -2.0, 2.0]))[0]
        Array([2., 0., 0.], dtype=float32)
        """,
    "guided_relu": """
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: guided_relu(x).sum())(jnp.array([1.0, -1.0]))
        Array([1., 0.], dtype=float32)
        """,
    "deconvnet_relu": """
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: deconvnet_relu(x).sum())(jnp.array([1.0, -1.0]))
        Array([1., 1.], dtype=float32)
        """,
}

_ops = export(JAX, __name__, _NOTES)
(reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm, custom_gradient,
 activation_with_rule, guided_relu, deconvnet_relu) = (getattr(_ops, n) for n in CORE_OPS)

__test__ = {name: getattr(_ops, name).__doc__ for name in CORE_OPS}  # run as doctests
