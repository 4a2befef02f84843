"""backflip for PyTensor: the gradient ops as ``OpFromGraph`` nodes with a ``pullback``.

The same names as every backflip adapter (``backflip._api.CORE_OPS``); the maths
is in :mod:`backflip.rules`. Build a graph with the ops, take ``pt.grad`` and
compile with ``pytensor.function`` as usual; λ may be a number or a symbolic scalar.

>>> import numpy as np, pytensor, pytensor.tensor as pt
>>> import backflip.pytensor as bfp
>>> x, lambd = pt.vector("x"), pt.scalar("lambd")
>>> dx = pt.grad(bfp.reverse_gradient(x, lambd).sum(), x)
>>> pytensor.function([x, lambd], dx, mode="FAST_COMPILE")(np.ones(2), 0.5)
array([-0.5, -0.5])
"""

from backflip._optional import require as _require

_require("pytensor", purpose="backflip.pytensor")

from backflip.pytensor._ops import (
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    deconvnet_relu,
    guided_relu,
    reverse_gradient,
    scale_gradient,
)
from backflip.pytensor._override import OverrideReport, override_gradients

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
