"""Identity-forward gradient ops and ``custom_gradient`` for PyTensor.

The maths is in :mod:`backflip.rules`. Each op is an ``OpFromGraph`` whose inner
graph is the identity and whose ``pullback`` (PyTensor 3's name for the
vector-Jacobian product override; ``lop_overrides`` is deprecated and
``grad_overrides`` is gone) applies the rule. Assigning ``op.grad = ...`` on an
``OpFromGraph`` instance, the old Theano recipe, is silently ignored by PyTensor:
only ``pullback`` is used. The pullbacks are symbolic, so a second derivative
through a reversal picks up ``lambd**2``. One ``OpFromGraph`` is built per input
dtype and static shape (and per clip bounds) and reused, so the output keeps the
input's static shape (broadcastable dimensions included).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Variable
from pytensor.tensor.variable import TensorVariable

from backflip._custom_contract import (
    check_decoratee,
    gradients_tuple,
    split_output,
    tensor_positions,
    wraps,
)
from backflip._validate import check_clip_bounds, check_max_norm
from backflip.pytensor._params import as_factor, as_param, check_input

__all__ = [
    "clip_gradient",
    "clip_gradient_norm",
    "custom_gradient",
    "reverse_gradient",
    "scale_gradient",
]


@functools.lru_cache(maxsize=64)
def _times_op(dtype: str, shape: tuple[int | None, ...]) -> OpFromGraph:
    x = pt.tensor(dtype=dtype, shape=shape)
    factor = pt.scalar(dtype=dtype)

    def pullback(inputs, outputs, cotangents):
        return [inputs[1] * cotangents[0], disconnected_type()]

    return OpFromGraph([x, factor], [x], pullback=pullback, name="backflip_times", inline=True)


def reverse_gradient(x: Any, lambd: float | TensorVariable = 1.0) -> TensorVariable:
    """Gradient reversal (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.

    ``lambd`` (λ >= 0) is a number (checked now) or a symbolic 0-d tensor such as
    ``pt.scalar("lambd")`` or a shared variable (not checked; one compiled function
    serves every λ).

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x, lambd = pt.vector("x"), pt.scalar("lambd")
    >>> dx = pt.grad(reverse_gradient(x, lambd).sum(), x)
    >>> pytensor.function([x, lambd], dx, mode="FAST_COMPILE")(np.ones(2), 0.5)
    array([-0.5, -0.5])
    """
    x = check_input(x, "reverse_gradient")
    lam = as_param(lambd, x.dtype, "lambd", "reverse_gradient")
    return _times_op(x.dtype, x.type.shape)(x, -lam)


def scale_gradient(x: Any, factor: float | TensorVariable) -> TensorVariable:
    """Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite sign).

    >>> import pytensor, pytensor.tensor as pt
    >>> x = pt.scalar("x")
    >>> dx = pt.grad(scale_gradient(6.0 * x, 0.5) ** 2, x)  # the default is 216
    >>> float(pytensor.function([x], dx, mode="FAST_COMPILE")(3.0))
    108.0
    """
    x = check_input(x, "scale_gradient")
    return _times_op(x.dtype, x.type.shape)(x, as_factor(factor, x.dtype))


@functools.lru_cache(maxsize=64)
def _clip_op(
    dtype: str, shape: tuple[int | None, ...], lo: float | None, hi: float | None
) -> OpFromGraph:
    x = pt.tensor(dtype=dtype, shape=shape)

    def pullback(inputs, outputs, cotangents):
        (g,) = cotangents
        if lo is not None:
            g = pt.maximum(g, pt.constant(lo, dtype=dtype))
        if hi is not None:
            g = pt.minimum(g, pt.constant(hi, dtype=dtype))
        return [g]

    return OpFromGraph([x], [x], pullback=pullback, name="backflip_clip", inline=True)


def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> TensorVariable:
    """Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> dx = pt.grad(clip_gradient(x, -0.1, 0.1).sum(), x)
    >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.ones(2))
    array([0.1, 0.1])
    """
    lo, hi = check_clip_bounds(min, max, "clip_gradient")
    x = check_input(x, "clip_gradient")
    return _clip_op(x.dtype, x.type.shape, lo, hi)(x)


@functools.lru_cache(maxsize=64)
def _clip_norm_op(dtype: str, shape: tuple[int | None, ...], max_norm: float) -> OpFromGraph:
    x = pt.tensor(dtype=dtype, shape=shape)

    def pullback(inputs, outputs, cotangents):
        (g,) = cotangents
        norm = pt.sqrt(pt.sum(pt.sqr(g)))
        scale = pt.switch(pt.gt(norm, max_norm), max_norm / pt.maximum(norm, 1e-30), 1.0)
        return [pt.cast(g * scale, dtype)]

    return OpFromGraph([x], [x], pullback=pullback, name="backflip_clip_norm", inline=True)


def clip_gradient_norm(x: Any, max_norm: float) -> TensorVariable:
    """Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``.

    The norm is over the whole tensor.

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> dx = pt.grad((clip_gradient_norm(x, 1.0) * np.array([3.0, 4.0])).sum(), x)
    >>> pytensor.function([x], dx, mode="FAST_COMPILE")(np.zeros(2))
    array([0.6, 0.8])
    """
    max_norm = check_max_norm(max_norm, "clip_gradient_norm")
    x = check_input(x, "clip_gradient_norm")
    return _clip_norm_op(x.dtype, x.type.shape, max_norm)(x)


def _is_variable(a: Any) -> bool:
    return isinstance(a, Variable)


def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
    """Decorator: ``fn(*args, **kwargs)`` builds ``(y, grad_fn)``; ``grad_fn(g)`` builds ``dL/dx``.

    The contract, the same in every backflip adapter, is in
    ``docs/guides/custom-gradients.md``: ``grad_fn`` returns one gradient per positional
    argument, tensor or not (``None`` for one that gets none: a zero gradient here);
    keyword arguments are constants. Here a tensor is a PyTensor variable (shared
    variables included; a Python float or NumPy array is a constant). PyTensor is
    symbolic: ``fn`` receives symbolic inputs and returns one symbolic output ``y``,
    which becomes an ``OpFromGraph`` node whose pullback is ``grad_fn``. ``fn`` is
    called once for the forward graph and again for the pullback graph (so ``grad_fn``
    may use the forward's intermediate values); it must not have side effects.

    >>> import pytensor, pytensor.tensor as pt
    >>> @custom_gradient
    ... def cube_with_linear_grad(x):
    ...     return x**3, lambda g: g * x
    >>> x = pt.scalar("x")
    >>> y = cube_with_linear_grad(x)
    >>> f = pytensor.function([x], [y, pt.grad(y, x)], mode="FAST_COMPILE")
    >>> [float(v) for v in f(2.0)]  # the default gradient would be 12
    [8.0, 2.0]
    """
    name = check_decoratee(fn)

    @wraps(fn, name)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        positions = tensor_positions(args, _is_variable)
        keys = tuple(k for k, v in kwargs.items() if _is_variable(v))
        if not positions and not keys:  # nothing to differentiate
            return split_output(fn(*args, **kwargs), name)[0]

        # The variables are the op's inputs (an OpFromGraph's inner graph is closed);
        # keyword variables get a zero gradient, constants stay in the closure.
        def build(*xs: TensorVariable) -> tuple[TensorVariable, Callable[..., Any]]:
            full = list(args)
            for i, x in zip(positions, xs, strict=False):
                full[i] = x
            kw = {**kwargs, **dict(zip(keys, xs[len(positions) :], strict=True))}
            y, grad_fn = split_output(fn(*full, **kw), name)
            return pt.as_tensor_variable(y), grad_fn

        def pullback(inputs, outputs, cotangents):
            _, grad_fn = build(*inputs)
            grads = gradients_tuple(grad_fn(cotangents[0]), len(args), name)
            grads = (*(grads[i] for i in positions), *(None for _ in keys))
            return [
                pt.zeros_like(x) if gr is None else pt.cast(gr, x.dtype)
                for gr, x in zip(grads, inputs, strict=True)
            ]

        outer = [pt.as_tensor_variable(v) for v in (*(args[i] for i in positions),
                                                    *(kwargs[k] for k in keys))]
        inner = [x.type() for x in outer]  # same dtype and static shape
        y, _ = build(*inner)
        return OpFromGraph(
            inner, [y], pullback=pullback, name=f"custom_gradient_{name}", inline=True
        )(*outer)

    return wrapper
