"""backflip for JAX: the gradient ops as ``jax.custom_jvp`` / ``jax.custom_vjp`` rules.

The same names as every backflip adapter (``backflip._api.CORE_OPS``); the maths
is in :mod:`backflip.rules`. ``reverse_gradient`` and ``scale_gradient`` work in
forward and reverse mode; the clipping ops, ``custom_gradient`` and the
nonlinearity rules are reverse mode only. All work under ``jit`` and ``vmap``.

>>> import jax, jax.numpy as jnp
>>> import backflip.jax as bfj
>>> step = jax.jit(jax.grad(lambda x, lambd: bfj.reverse_gradient(x, lambd).sum()))
>>> step(jnp.ones(2), 0.5)  # a new lambd every call does not recompile
Array([-0.5, -0.5], dtype=float32)
"""

from backflip._optional import require as _require

_require("jax", purpose="backflip.jax")

from backflip.jax._ops import (
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    deconvnet_relu,
    guided_relu,
    reverse_gradient,
    scale_gradient,
)
from backflip.jax._override import OverrideReport, override_gradients

__all__ = [
    "OverrideReport",
    "activation_with_rule",
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "deconvnet_relu",
    "guided_relu",
    "override_gradients",
    "reverse_gradient",
    "scale_gradient",
]
