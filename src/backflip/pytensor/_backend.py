"""What PyTensor supplies to the shared backend layer (:mod:`backflip._backend`).

Each op is an ``OpFromGraph`` whose inner graph is the identity (or the activation)
and whose ``pullback`` (PyTensor 3's name for the vector-Jacobian product override;
``lop_overrides`` is deprecated and ``grad_overrides`` is gone) applies the rule.
Assigning ``op.grad = ...`` on an ``OpFromGraph`` instance, the old Theano recipe, is
silently ignored by PyTensor: only ``pullback`` is used. The pullbacks are symbolic,
so a second derivative through a reversal picks up ``lambd**2``. One ``OpFromGraph``
is built per input dtype and static shape (and per rule and parameters) and reused,
so the output keeps the input's static shape (broadcastable dimensions included).
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
from pytensor.gradient import disconnected_type, grad
from pytensor.graph.basic import Variable
from pytensor.tensor.variable import TensorConstant, TensorVariable

from backflip._backend import Backend, CustomCall, Namespace, representable, rule_backward

__all__ = ["PYTENSOR", "XP"]


def _full(value: float, like: Any) -> TensorVariable:
    return pt.constant(representable(value, like.dtype))  # inf beyond the dtype's range


XP = Namespace(
    maximum=pt.maximum, minimum=pt.minimum, where=pt.switch, exp=pt.exp, expm1=pt.expm1,
    tanh=pt.tanh, erf=pt.erf, sigmoid=pt.sigmoid, softplus=pt.softplus,
    norm=lambda g: pt.sqrt(pt.sum(pt.sqr(g))), full=_full,
    cast=lambda t, like: pt.cast(t, like.dtype),
)
"""PyTensor's array functions for the shared maths."""

_NATIVE = MappingProxyType({"relu": lambda x: pt.switch(pt.gt(x, 0), x, 0)})


@functools.lru_cache(maxsize=64)
def _times_op(dtype: str, shape: tuple[int | None, ...]) -> OpFromGraph:
    x = pt.tensor(dtype=dtype, shape=shape)
    factor = pt.scalar(dtype=dtype)

    def pullback(inputs, outputs, cotangents):
        return [inputs[1] * cotangents[0], disconnected_type()]

    return OpFromGraph([x, factor], [x], pullback=pullback, name="backflip_times", inline=True)


@functools.lru_cache(maxsize=128)
def _identity_op(backward: Any, static: tuple, dtype: str,
                 shape: tuple[int | None, ...]) -> OpFromGraph:
    x = pt.tensor(dtype=dtype, shape=shape)

    def pullback(inputs, outputs, cotangents):
        return [pt.cast(backward(XP, cotangents[0], *static), dtype)]

    name = f"backflip_{backward.__name__.removesuffix('_backward')}"
    return OpFromGraph([x], [x], pullback=pullback, name=name, inline=True)


@functools.lru_cache(maxsize=256)
def _rule_op(backend: Backend, name: str, rule: Any, params: tuple, dtype: str,
             shape: tuple[int | None, ...]) -> OpFromGraph:
    kw = dict(params)
    x = pt.tensor(dtype=dtype, shape=shape)
    y = pt.cast(backend.forward(name, x, kw), dtype)

    def pullback(inputs, outputs, cotangents):
        (x,), (y,), (g,) = inputs, outputs, cotangents
        # act' is elementwise, so the VJP of the forward is g * act'(x)
        y_again = backend.forward(name, x, kw)
        dx = rule_backward(XP, rule, lambda g: grad(None, wrt=x, known_grads={y_again: g}),
                           x, y, g)
        return [pt.cast(dx, dtype)]

    return OpFromGraph([x], [y], pullback=pullback, name=f"backflip_{name}_{rule}", inline=True)


class PyTensorBackend(Backend):
    name = "pytensor"
    tensor_type = "TensorVariable"
    cast_hint = "cast first, e.g. x.astype('float64')"
    param_hint = "Pass e.g. pt.scalar('lambd') (floatX) or 0.5"
    xp = XP
    native = _NATIVE

    def to_tensor(self, x: Any) -> TensorVariable:
        return pt.as_tensor_variable(x)

    def dtype(self, x: Any) -> str:
        return str(x.dtype)

    def is_param_tensor(self, value: Any) -> bool:
        return isinstance(value, Variable)

    def param(self, value, dtype, name, where, *check):
        if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0:
            value = value.item()
        return super().param(value, dtype, name, where, *check)

    def ndim(self, t: Any) -> int:
        return t.ndim

    def shape(self, t: Any) -> tuple:
        return t.type.shape

    def concrete(self, t: Any) -> float | None:
        return float(t.data) if isinstance(t, TensorConstant) else None

    def cast(self, t: Any, dtype: str) -> TensorVariable:
        return pt.cast(pt.as_tensor_variable(t), dtype)

    def constant(self, value: float, dtype: str) -> TensorVariable:
        return pt.constant(value, dtype=dtype)

    def is_tensor(self, a: Any) -> bool:
        return isinstance(a, Variable)

    def times(self, x: TensorVariable, factor: TensorVariable) -> TensorVariable:
        return _times_op(x.dtype, x.type.shape)(x, factor)

    def identity_vjp(self, x: TensorVariable, backward: Any, *static: Any) -> TensorVariable:
        return _identity_op(backward, static, x.dtype, x.type.shape)(x)

    def activation(self, x: TensorVariable, name: str, rule: Any, params: tuple) -> Any:
        return _rule_op(self, name, rule, params, x.dtype, x.type.shape)(x)

    def custom(self, call: CustomCall) -> TensorVariable:
        # The variables are the op's inputs (an OpFromGraph's inner graph is closed);
        # keyword variables get a zero gradient, constants stay in the closure.
        def pullback(inputs, outputs, cotangents):
            _, grad_fn = call.run(*inputs)
            return [
                pt.zeros_like(x) if gr is None else pt.cast(gr, x.dtype)
                for gr, x in zip(call.gradients(grad_fn, cotangents[0]), inputs, strict=True)
            ]

        outer = [pt.as_tensor_variable(v) for v in call.arrays]
        inner = [x.type() for x in outer]  # same dtype and static shape
        y = pt.as_tensor_variable(call.run(*inner)[0])
        return OpFromGraph(
            inner, [y], pullback=pullback, name=f"custom_gradient_{call.name}", inline=True
        )(*outer)


PYTENSOR = PyTensorBackend()
