"""backflip's eight functions for PyTensor, from the shared layer.

The primitives are in :mod:`backflip.pytensor._backend`; what is the framework's own
is said in each docstring after the shared text (:mod:`backflip._backend`).
"""

from backflip._api import CORE_OPS
from backflip._backend import export
from backflip.pytensor._backend import PYTENSOR

__all__ = list(CORE_OPS)

_NOTES = {
    "reverse_gradient": """
        ``lambd`` may be a symbolic 0-d tensor such as ``pt.scalar("lambd")`` or a shared
        variable: one compiled function then serves every λ.

        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x, lambd = pt.vector("x"), pt.scalar("lambd")
        >>> dx = pt.grad(reverse_gradient(x, lambd).sum(), x)
        >>> pytensor.function([x, lambd], dx, mode="FAST_COMPILE")(np.ones(2), 0.5)
        array([-0.5, -0.5])
        """,
    "scale_gradient": """
        >>> import pytensor, pytensor.tensor as pt
        >>> x = pt.scalar("x")
        >>> dx = pt.grad(scale_gradient(6.0 * x, 0.5) ** 2, x)  # the default is 216
        >>> float(pytensor.function([x], dx, mode="FAST_COMPILE")(3.0))
        108.0
        """,
    "clip_gradient": """
        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x = pt.vector("x")
        >>> dx = pt.grad(clip_gradient(x, -0.1, 0.1).sum(), x)
        >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.ones(2))
        array([0.1, 0.1])
        """,
    "clip_gradient_norm": """
        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x = pt.vector("x")
        >>> dx = pt.grad((clip_gradient_norm(x, 1.0) * np.array([3.0, 4.0])).sum(), x)
        >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.zeros(2))
        array([0.6, 0.8])
        """,
    "custom_gradient": """
        A tensor is a PyTensor variable (shared variables included; a Python float or
        NumPy array is a constant); ``None`` becomes a zero gradient. PyTensor is symbolic:
        ``fn`` receives symbolic inputs and returns one symbolic output ``y``, which becomes
        an ``OpFromGraph`` node whose pullback is ``grad_fn``. ``fn`` is called once for the
        forward graph and again for the pullback graph (so ``grad_fn`` may use the forward's
        intermediate values); it must not have side effects.

        >>> import pytensor, pytensor.tensor as pt
        >>> @custom_gradient
        ... def cube_with_linear_grad(x):
        ...     return x**3, lambda g: g * x
        >>> x = pt.scalar("x")
        >>> y = cube_with_linear_grad(x)
        >>> f = pytensor.function([x], [y, pt.grad(y, x)], mode="FAST_COMPILE")
        >>> [float(v) for v in f(2.0)]  # the default gradient would be 12
        [8.0, 2.0]
        """,
    "activation_with_rule": """
        A user ``rule`` is built from PyTensor ops.

        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x, g = pt.vector("x"), np.array([2.0, -2.0, 2.0])
        >>> dx = pt.grad((activation_with_rule(x, "relu", "guided") * g).sum(), x)
        >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, 1.0, -1.0]))
        array([2., 0., 0.])
        """,
    "guided_relu": """
        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x = pt.vector("x")
        >>> dx = pt.grad(guided_relu(x).sum(), x)
        >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, -1.0]))
        array([1., 0.])
        """,
    "deconvnet_relu": """
        >>> import numpy as np, pytensor, pytensor.tensor as pt
        >>> x = pt.vector("x")
        >>> dx = pt.grad(deconvnet_relu(x).sum(), x)
        >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.array([1.0, -1.0]))
        array([1., 1.])
        """,
}

_ops = export(PYTENSOR, __name__, _NOTES)
(reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm, custom_gradient,
 activation_with_rule, guided_relu, deconvnet_relu) = (getattr(_ops, n) for n in CORE_OPS)

__test__ = {name: getattr(_ops, name).__doc__ for name in CORE_OPS}  # run as doctests
