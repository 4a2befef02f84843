"""Keras 3 layers: GradientReversal, GradientScale, GradientClip.

Each layer is the identity forward and changes the gradient as its functional op
(:mod:`backflip.keras._ops`). λ lives in a non-trainable float32 variable named
``lambd``: setting it (``set_lambd``, or :class:`DANNLambdaScheduler` during
``fit``) changes no graph, so a compiled train step is not retraced. The layers
serialise with ``get_config`` and round-trip through ``.keras`` files.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from backflip._validate import check_clip_bounds, check_factor, check_lambd
from backflip.keras._backend import require_gradients, times_in_backward
from backflip.keras._ops import clip_gradient, scale_gradient

__all__ = ["GradientClip", "GradientReversal", "GradientScale"]


class _Identity(keras.layers.Layer):
    """Shape-preserving layer with no build step."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


@keras.saving.register_keras_serializable(package="backflip")
class GradientReversal(_Identity):
    """Gradient reversal layer (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.

    Args:
        lambd: the initial λ >= 0, kept in the non-trainable variable ``self.lambd``.

    >>> import numpy as np
    >>> from keras import ops
    >>> layer = GradientReversal(0.5)
    >>> layer.set_lambd(2.0)
    >>> y = layer(np.ones(2, "float32"))
    >>> float(layer.lambd), ops.convert_to_numpy(y).tolist()
    (2.0, [1.0, 1.0])
    """

    def __init__(self, lambd: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        require_gradients("GradientReversal")
        value = check_lambd(lambd, "GradientReversal")
        self.lambd = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            trainable=False,
            name="lambd",
        )

    def set_lambd(self, value: float) -> None:
        """Set λ in place (checked: finite and >= 0)."""
        self.lambd.assign(check_lambd(value, "GradientReversal.set_lambd"))

    def call(self, x: Any) -> Any:
        return times_in_backward(x, ops.negative(ops.cast(self.lambd, x.dtype)), self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lambd": float(self.lambd)}


@keras.saving.register_keras_serializable(package="backflip")
class GradientScale(_Identity):
    """Gradient scaling layer: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign).

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.ones(2, "float32"), np.array([2.0, -4.0], "float32")
    >>> vjp(GradientScale(-0.5), x, g)[1].tolist()
    [-1.0, 2.0]
    """

    def __init__(self, factor: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        require_gradients("GradientScale")
        self.factor = check_factor(factor, "GradientScale")

    def call(self, x: Any) -> Any:
        return scale_gradient(x, self.factor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="backflip")
class GradientClip(_Identity):
    """Gradient clipping layer: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.

    >>> import numpy as np
    >>> from backflip.keras._override import vjp
    >>> x, g = np.ones(3, "float32"), np.array([2.0, -2.0, 0.25], "float32")
    >>> vjp(GradientClip(min=-1.0, max=1.0), x, g)[1].tolist()
    [1.0, -1.0, 0.25]
    """

    def __init__(self, min: float | None = None, max: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        require_gradients("GradientClip")
        self.min, self.max = check_clip_bounds(min, max, "GradientClip")

    def call(self, x: Any) -> Any:
        return clip_gradient(x, self.min, self.max)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min": self.min, "max": self.max}
