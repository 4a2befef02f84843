"""backflip's eight functions on ``keras.ops`` (TensorFlow, JAX and PyTorch backends), from the shared layer.

The primitives are in :mod:`backflip.keras._backend`; what is the framework's own
is said in each docstring after the shared text (:mod:`backflip._backend`).
"""

from backflip._api import CORE_OPS
from backflip._backend import export
from backflip.keras._backend import KERAS

__all__ = list(CORE_OPS)

_NOTES = {
    "reverse_gradient": """
        ``lambd``: a float, a 0-d tensor or a Keras variable (a λ held in a variable can
        change between steps without retracing a compiled train step). Any Keras backend
        but numpy and openvino, which compute no gradients (backflip raises there).

        >>> import numpy as np
        >>> y = reverse_gradient(np.ones(2, "float32"), 0.5)
        >>> np.asarray(y).tolist()
        [1.0, 1.0]
        """,
    "scale_gradient": """
        >>> import numpy as np
        >>> from backflip.keras._override import vjp
        >>> x, g = np.ones(2, "float32"), np.array([2.0, -4.0], "float32")
        >>> vjp(lambda x: scale_gradient(x, 0.5), x, g)[1].tolist()
        [1.0, -2.0]
        """,
    "clip_gradient": """
        >>> import numpy as np
        >>> from backflip.keras._override import vjp
        >>> x, g = np.ones(3, "float32"), np.array([2.0, -2.0, 0.25], "float32")
        >>> vjp(lambda x: clip_gradient(x, -0.5, 0.5), x, g)[1].tolist()
        [0.5, -0.5, 0.25]
        """,
    "clip_gradient_norm": """
        >>> import numpy as np
        >>> from backflip.keras._override import vjp
        >>> x, g = np.ones(2, "float32"), np.array([3.0, 4.0], "float32")
        >>> vjp(lambda x: clip_gradient_norm(x, 1.0), x, g)[1].tolist()
        [0.6..., 0.8...]
        """,
    "custom_gradient": """
        On each Keras backend this is that backend's own backflip adapter
        (:func:`backflip.tensorflow.custom_gradient`, :func:`backflip.jax.custom_gradient`,
        :func:`backflip.torch.custom_gradient`), so the contract, the errors and the
        compilers (``tf.function``, ``jax.jit``, ``torch.compile``) are the same; a tensor
        is that backend's tensor or a ``keras.Variable`` (passed to ``fn`` as its value).
        ``grad_fn`` takes only the upstream gradient, unlike ``keras.ops.custom_gradient``.

        >>> import numpy as np
        >>> from keras import ops
        >>> @custom_gradient
        ... def cube_with_linear_grad(x):
        ...     return x**3, lambda g: g * x
        >>> float(cube_with_linear_grad(ops.convert_to_tensor(np.float32(2.0))))
        8.0
        """,
    "activation_with_rule": """
        >>> import numpy as np
        >>> np.asarray(activation_with_rule(np.array([-1.0, 2.0], "float32"))).tolist()
        [0.0, 2.0]
        """,
    "guided_relu": """
        >>> import numpy as np
        >>> from backflip.keras._override import vjp
        >>> x, g = np.array([1.0, 1.0, -1.0], "float32"), np.array([2.0, -2.0, 2.0], "float32")
        >>> vjp(guided_relu, x, g)[1].tolist()
        [2.0, 0.0, 0.0]
        """,
    "deconvnet_relu": """
        >>> import numpy as np
        >>> from backflip.keras._override import vjp
        >>> x, g = np.array([1.0, 1.0, -1.0], "float32"), np.array([2.0, -2.0, 2.0], "float32")
        >>> vjp(deconvnet_relu, x, g)[1].tolist()
        [2.0, 0.0, 2.0]
        """,
}

_ops = export(KERAS, __name__, _NOTES)
(reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm, custom_gradient,
 activation_with_rule, guided_relu, deconvnet_relu) = (getattr(_ops, n) for n in CORE_OPS)

__test__ = {name: getattr(_ops, name).__doc__ for name in CORE_OPS}  # run as doctests
