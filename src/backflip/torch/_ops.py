"""backflip's eight functions for PyTorch (the reference), from the shared layer.

The primitives are in :mod:`backflip.torch._backend`; what is the framework's own
is said in each docstring after the shared text (:mod:`backflip._backend`).
"""

from backflip._api import CORE_OPS
from backflip._backend import export
from backflip.torch._backend import TORCH

__all__ = list(CORE_OPS)

_NOTES = {
    "reverse_gradient": """
        See :mod:`backflip.torch._backend` for ``torch.compile`` behaviour: a 0-d tensor λ is
        a graph input (changing it in place never recompiles); a Python number is a
        constant that recompiles once into a symbolic float.

        >>> import torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> reverse_gradient(x, lambd=0.5).sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000])
        """,
    "scale_gradient": """
        >>> import torch
        >>> x = torch.tensor([3.0], requires_grad=True)
        >>> (6 * scale_gradient(x, 0.5)).pow(2).sum().backward()
        >>> x.grad
        tensor([108.])
        """,
    "clip_gradient": """
        As ``tf.clip_by_value`` applied to the upstream gradient. Under AMP's ``GradScaler``
        the clip sees the *scaled* gradient.

        >>> import torch
        >>> x = torch.tensor([2.0], requires_grad=True)
        >>> clip_gradient(x, -0.1, 0.1).sum().backward()
        >>> x.grad
        tensor([0.1000])
        """,
    "clip_gradient_norm": """
        >>> import torch
        >>> x = torch.zeros(2, requires_grad=True)
        >>> (clip_gradient_norm(x, 1.0) * torch.tensor([3.0, 4.0])).sum().backward()
        >>> x.grad
        tensor([0.6000, 0.8000])
        """,
    "custom_gradient": """
        Here ``y`` is one tensor; a gradient must have its argument's shape (else
        :class:`~backflip.BackflipValueError`). The backward may use tensor ops, which makes
        it differentiable again. It works under ``torch.func.grad``/``vmap`` and
        ``torch.compile(fullgraph=True)``, keyword calls included.

        >>> import torch
        >>> @custom_gradient
        ... def cube(x):
        ...     return x**3, lambda g: g * x  # deliberately not the derivative 3x²
        >>> x = torch.tensor([2.0], requires_grad=True)
        >>> cube(x).sum().backward()
        >>> x.grad
        tensor([2.])
        """,
    "activation_with_rule": """
        The forward is PyTorch's own (``torch.relu``, ``F.gelu``, ...); ``softplus`` also
        takes PyTorch's ``threshold=20.0``. Works under ``torch.func.vmap`` and
        ``torch.compile``.

        >>> import torch
        >>> x = torch.tensor([1.0, 1.0, -1.0], requires_grad=True)
        >>> y = activation_with_rule(x, "relu", "guided")
        >>> y.backward(torch.tensor([2.0, -2.0, 2.0]))
        >>> x.grad
        tensor([2., 0., 0.])
        """,
    "guided_relu": """
        >>> import torch
        >>> x = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> guided_relu(x).backward(torch.tensor([-1.0, 1.0])); x.grad
        tensor([0., 0.])
        """,
    "deconvnet_relu": """
        >>> import torch
        >>> x = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> deconvnet_relu(x).backward(torch.tensor([-1.0, 1.0])); x.grad
        tensor([0., 1.])
        """,
}

_ops = export(TORCH, __name__, _NOTES)
(reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm, custom_gradient,
 activation_with_rule, guided_relu, deconvnet_relu) = (getattr(_ops, n) for n in CORE_OPS)

__test__ = {name: getattr(_ops, name).__doc__ for name in CORE_OPS}  # run as doctests
