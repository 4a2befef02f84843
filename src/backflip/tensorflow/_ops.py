"""backflip's eight functions for TensorFlow 2, from the shared layer.

The primitives are in :mod:`backflip.tensorflow._backend`; what is the framework's own
is said in each docstring after the shared text (:mod:`backflip._backend`).
"""

from backflip._api import CORE_OPS
from backflip._backend import export
from backflip.tensorflow._backend import TF

__all__ = list(CORE_OPS)

_NOTES = {
    "reverse_gradient": """
        Pass λ as a ``tf.Variable`` or a tensor inside ``tf.function`` so that a new value
        does not retrace the function.

        >>> import tensorflow as tf
        >>> x = tf.constant([1.0, 2.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = reverse_gradient(x, 0.5)
        >>> tape.gradient(y, x).numpy()
        array([-0.5, -0.5], dtype=float32)
        """,
    "scale_gradient": """
        >>> import tensorflow as tf
        >>> x = tf.constant(3.0)
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = scale_gradient(6.0 * x, 0.5) ** 2
        >>> float(tape.gradient(y, x))  # the default gradient is 216
        108.0
        """,
    "clip_gradient": """
        >>> import tensorflow as tf
        >>> x = tf.constant([1.0, 2.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = clip_gradient(x, -0.1, 0.1)
        >>> tape.gradient(y, x).numpy()
        array([0.1, 0.1], dtype=float32)
        """,
    "clip_gradient_norm": """
        The scale is computed without ``g * max_norm`` (unlike ``tf.clip_by_norm``, which
        overflows for a large valid ``max_norm``).

        >>> import tensorflow as tf
        >>> x = tf.constant([0.0, 0.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = clip_gradient_norm(x, 1.0)
        >>> tape.gradient(y, x, output_gradients=tf.constant([3.0, 4.0])).numpy()
        array([0.6, 0.8], dtype=float32)
        """,
    "custom_gradient": """
        A tensor is a ``tf.Tensor`` or ``tf.Variable`` (a Python float or NumPy array is a
        constant). Built on ``tf.custom_gradient``; works eagerly and in ``tf.function``.

        >>> import tensorflow as tf
        >>> @custom_gradient
        ... def cube_with_linear_grad(x):
        ...     return x**3, lambda g: g * x
        >>> x = tf.constant(2.0)
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = cube_with_linear_grad(x)
        >>> float(y), float(tape.gradient(y, x))  # the default gradient would be 12
        (8.0, 2.0)
        """,
    "activation_with_rule": """
        >>> import tensorflow as tf
        >>> x = tf.constant([1.0, 1.0, -1.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = activation_with_rule(x, "relu", "guided")
        >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
        array([2., 0., 0.], dtype=float32)
        """,
    "guided_relu": """
        >>> import tensorflow as tf
        >>> x = tf.constant([1.0, 1.0, -1.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = guided_relu(x)
        >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
        array([2., 0., 0.], dtype=float32)
        """,
    "deconvnet_relu": """
        >>> import tensorflow as tf
        >>> x = tf.constant([1.0, 1.0, -1.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(x)
        ...     y = deconvnet_relu(x)
        >>> tape.gradient(y, x, output_gradients=tf.constant([2.0, -2.0, 2.0])).numpy()
        array([2., 0., 2.], dtype=float32)
        """,
}

_ops = export(TF, __name__, _NOTES)
(reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm, custom_gradient,
 activation_with_rule, guided_relu, deconvnet_relu) = (getattr(_ops, n) for n in CORE_OPS)

__test__ = {name: getattr(_ops, name).__doc__ for name in CORE_OPS}  # run as doctests
