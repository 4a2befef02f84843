"""backflip's PyTorch backend (the reference): gradient ops, modules and rule checks.

``import backflip.torch`` imports torch; ``import backflip`` alone does not.
"""

from backflip._optional import require as _require

_require("torch", purpose="backflip.torch")

from backflip.torch._check import GradientCheckError, GradientReport, check_gradient
from backflip.torch._modules import GradientClip, GradientReversal, GradientScale
from backflip.torch._ops import (
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    deconvnet_relu,
    guided_relu,
    reverse_gradient,
    scale_gradient,
)
from backflip.torch._override import OverrideReport, override_gradients

__all__ = [
    "GradientCheckError",
    "GradientClip",
    "GradientReport",
    "GradientReversal",
    "GradientScale",
    "OverrideReport",
    "activation_with_rule",
    "check_gradient",
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "deconvnet_relu",
    "guided_relu",
    "override_gradients",
    "reverse_gradient",
    "scale_gradient",
]
