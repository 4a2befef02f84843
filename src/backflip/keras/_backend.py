"""The one place that knows how ``keras.ops.custom_gradient`` differs between backends.

``keras.ops.custom_gradient`` calls the backward as ``grad(upstream)`` under the
TensorFlow and JAX backends (``tf.custom_gradient`` / ``jax.custom_gradient``) and
as ``grad(*inputs, upstream=upstream)`` under PyTorch (a ``torch.autograd.Function``
that must return one gradient per input). Under the NumPy and OpenVINO backends it
only warns and drops the backward; backflip raises there instead.

Under JAX, ``jax.custom_gradient`` (a ``custom_vjp``) differentiates its primal
output as the plain forward in a second derivative, so a Hessian through a
reversal would pick up ``-lambd`` instead of ``lambd**2``. The ops whose backward
is linear in the upstream gradient (reverse, scale) therefore use a recursive
``jax.custom_jvp`` there (:func:`times_in_backward`), which is right at every order
and in forward mode too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from backflip._errors import BackflipError, BackflipTypeError
from backflip._validate import check_lambd

__all__ = [
    "as_param",
    "check_input",
    "concrete",
    "custom_vjp",
    "forward_identity",
    "require_gradients",
    "times_in_backward",
]

_NO_GRADIENTS = ("numpy", "openvino")


def require_gradients(where: str) -> None:
    """Raise :class:`BackflipError` where the Keras backend cannot override gradients."""
    name = keras.backend.backend()
    if name in _NO_GRADIENTS:
        raise BackflipError(
            f"{where} changes a gradient, but the Keras {name!r} backend computes no "
            "gradients (keras.ops.custom_gradient is a pass-through there). Set "
            "KERAS_BACKEND to 'tensorflow', 'jax' or 'torch' before importing keras."
        )


def custom_vjp(
    fn: Callable[..., tuple[Any, Callable[[Any], Any]]], where: str
) -> Callable[..., Any]:
    """``keras.ops.custom_gradient`` with one backward signature on every backend.

    ``fn(*xs)`` returns ``(y, grad_fn)``; ``grad_fn(g)`` returns one gradient per input
    (a tuple, or a bare tensor for a single input).
    """
    require_gradients(where)

    @ops.custom_gradient
    def op(*xs: Any) -> Any:
        y, grad_fn = fn(*xs)

        def grad(*args: Any, upstream: Any = None) -> Any:
            if upstream is None:  # TensorFlow and JAX: grad(upstream)
                (upstream,) = args
            grads = grad_fn(upstream)
            grads = tuple(grads) if isinstance(grads, list | tuple) else (grads,)
            if len(grads) != len(xs):
                raise BackflipTypeError(
                    f"the backward of {where} must return one gradient per input; it got "
                    f"{len(xs)} input(s) and returned {len(grads)} gradient(s)."
                )
            return grads

        return y, grad

    return op


def forward_identity(x: Any) -> Any:
    """The forward ``y = x`` of an op inside ``custom_vjp``, without a copy where allowed.

    ``torch.autograd.Function`` may return an input as it is (PyTorch makes the output
    an alias with its own autograd history), and JAX arrays are immutable; only
    ``tf.custom_gradient`` needs a new tensor, ``tf.identity``, which graphs elide.
    """
    return ops.copy(x) if keras.backend.backend() == "tensorflow" else x


def times_in_backward(x: Any, factor: Any, where: str) -> Any:
    """``y = x``, ``dL/dx = factor * dL/dy``; ``factor`` is a 0-d tensor of x's dtype."""
    require_gradients(where)
    if keras.backend.backend() == "jax":
        return _jax_times()(x, factor)

    def fn(x, factor):
        return forward_identity(x), lambda g: (ops.multiply(factor, g), ops.zeros_like(factor))

    return custom_vjp(fn, where)(x, factor)


@functools.cache
def _jax_times() -> Callable[[Any, Any], Any]:
    import jax

    @jax.custom_jvp
    def times(x, factor):
        return x

    @times.defjvp
    def times_jvp(primals, tangents):
        x, factor = primals
        # the primal output calls `times` again, so a second derivative applies the rule again
        return times(x, factor), factor * tangents[0]

    return times


def concrete(value: Any) -> float | None:
    """``value`` as a float, or None while it is symbolic (inside jit / tf.function)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():  # a graph tensor: checked when it was set
            return None
    elif backend == "jax":
        import jax

        if isinstance(getattr(value, "value", value), jax.core.Tracer):
            return None
    # float() rather than ops.convert_to_numpy, which warns on Keras variables
    return float(value)


def check_input(x: Any, where: str) -> Any:
    """``x`` as a floating-point tensor of the current backend."""
    if isinstance(x, keras.KerasTensor):
        raise BackflipTypeError(
            f"{where} got a symbolic keras.Input tensor; the functional ops take real "
            "tensors. In a functional model use the layers: GradientReversal, "
            "GradientScale or GradientClip."
        )
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if "float" not in dtype:
        raise BackflipTypeError(
            f"{where} needs a floating-point tensor; got dtype {dtype}. Integer and bool "
            "tensors have no gradient: cast first, e.g. keras.ops.cast(x, 'float32')."
        )
    return x


def as_param(
    value: Any,
    dtype: str,
    name: str,
    where: str,
    check: Callable[[object, str], float] = check_lambd,
) -> Any:
    """A 0-d tensor of ``dtype`` holding ``value`` (a number, a 0-d tensor or a Keras variable).

    Numbers and concrete tensors are checked by ``check`` (``check_lambd`` or
    ``check_factor``); a symbolic tensor only by dtype and shape.
    """
    if hasattr(value, "dtype") and not isinstance(value, float | int):
        vdtype = keras.backend.standardize_dtype(value.dtype)
        if "float" not in vdtype:
            raise BackflipTypeError(
                f"`{name}` of {where} must be a float or a floating-point 0-d tensor; got "
                f"a tensor of dtype {vdtype}. Pass e.g. 0.5 or a float32 keras.Variable."
            )
        if tuple(value.shape) != ():
            raise BackflipTypeError(
                f"`{name}` of {where} must be a 0-d tensor; got shape {tuple(value.shape)}. "
                "Pass one number per call."
            )
        number = concrete(value)
        if number is not None:
            check(number, where)
        return ops.cast(ops.convert_to_tensor(value), dtype)
    return ops.convert_to_tensor(check(value, where), dtype=dtype)
