"""Turn inputs, λ and factors into PyTensor variables, checking constant values eagerly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorConstant, TensorVariable

from backflip._errors import BackflipTypeError
from backflip._validate import check_factor, check_lambd

__all__ = ["as_factor", "as_param", "check_input"]


def check_input(x: object, where: str) -> TensorVariable:
    """``x`` as a floating-point tensor variable; integer and bool tensors have no gradient."""
    x = pt.as_tensor_variable(x)
    if not x.dtype.startswith("float"):
        raise BackflipTypeError(
            f"{where} needs a floating-point tensor; got dtype {x.dtype}. Integer and bool "
            "tensors have no gradient: cast first, e.g. x.astype('float64')."
        )
    return x


def as_param(
    value: object,
    dtype: str,
    name: str,
    where: str,
    check: Callable[[object, str], float] = check_lambd,
) -> TensorVariable:
    """A 0-d tensor of ``dtype`` holding ``value`` (a number, a 0-d constant or a symbolic scalar).

    A number or a constant is checked by ``check``; a symbolic scalar (e.g.
    ``pt.scalar("lambd")`` or a shared variable) has no value while the graph is
    built, so only its dtype and rank are checked: a new λ every step then needs no
    new compiled function.
    """
    if isinstance(value, TensorVariable) or hasattr(value, "type"):
        var = pt.as_tensor_variable(value)
        if not var.dtype.startswith("float"):
            raise BackflipTypeError(
                f"`{name}` of {where} must be a float or a floating-point 0-d tensor; got a "
                f"tensor of dtype {var.dtype}. Pass e.g. pt.scalar('lambd') (floatX) or 0.5."
            )
        if var.ndim != 0:
            raise BackflipTypeError(
                f"`{name}` of {where} must be a 0-d tensor; got {var.ndim} dimensions. "
                "Pass one number per call, e.g. pt.scalar('lambd')."
            )
        if isinstance(var, TensorConstant):
            check(float(var.data), where)
        return pt.cast(var, dtype)
    if isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0:
        value = value.item()
    return pt.constant(check(value, where), dtype=dtype)


def as_factor(value: object, dtype: str, where: str = "scale_gradient") -> TensorVariable:
    """:func:`as_param` for a scale factor (any finite sign)."""
    return as_param(value, dtype, "factor", where, check_factor)
