"""backflip for Keras 3: gradient layers, a λ-schedule callback and the functional ops.

Runs on the TensorFlow, JAX and PyTorch Keras backends (``KERAS_BACKEND``); the
NumPy backend computes no gradients, so every op raises
:class:`~backflip.BackflipError` there. The functional names are those of every
backflip adapter (``backflip._api.CORE_OPS``); the maths is in
:mod:`backflip.rules`.

>>> import keras
>>> import backflip.keras as bfk
>>> x = keras.Input((4,))
>>> domain = keras.layers.Dense(1)(bfk.GradientReversal(lambd=0.0)(x))
>>> model = keras.Model(x, domain)
>>> [type(layer).__name__ for layer in model.layers][1]
'GradientReversal'
"""

from backflip._optional import require as _require

_require("keras", purpose="backflip.keras")

from backflip.keras._callbacks import DANNLambdaScheduler
from backflip.keras._layers import GradientClip, GradientReversal, GradientScale
from backflip.keras._ops import (
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    deconvnet_relu,
    guided_relu,
    reverse_gradient,
    scale_gradient,
)
from backflip.keras._override import OverrideReport, override_gradients

__all__ = [
    "DANNLambdaScheduler",
    "GradientClip",
    "GradientReversal",
    "GradientScale",
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
