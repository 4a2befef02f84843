"""backflip for TensorFlow 2: the gradient ops as ``tf.custom_gradient`` functions.

The same names as every backflip adapter (``backflip._api.CORE_OPS``); the maths
is in :mod:`backflip.rules`. Each op works eagerly and inside ``tf.function``.

>>> import tensorflow as tf
>>> import backflip.tensorflow as bft
>>> lambd = tf.Variable(0.5)
>>> x = tf.constant([1.0, -2.0])
>>> with tf.GradientTape() as tape:
...     tape.watch(x)
...     y = bft.reverse_gradient(x, lambd)
>>> tape.gradient(y, x).numpy()
array([-0.5, -0.5], dtype=float32)
"""

from backflip._optional import require as _require

_require("tensorflow", purpose="backflip.tensorflow")

from backflip.tensorflow._ops import (
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    deconvnet_relu,
    guided_relu,
    reverse_gradient,
    scale_gradient,
)
from backflip.tensorflow._override import OverrideReport, override_gradients

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
