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
import importlib
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import keras
from keras import ops

from backflip._backend import Backend, Namespace, representable
from backflip._custom_contract import wraps
from backflip._errors import BackflipError, BackflipTypeError

__all__ = [
    "KERAS",
    "XP",
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


def _full(value: float, like: Any) -> Any:
    """A 0-d tensor of ``like``'s dtype holding ``value`` exactly.

    Not ``ops.cast(value, dtype)``: that converts a Python float to float32 first on
    the TensorFlow and torch backends, so a float64 clip bound 0.1 became
    0.10000000149 there.
    """
    return ops.convert_to_tensor(
        representable(value, keras.backend.standardize_dtype(like.dtype)), dtype=like.dtype)


# Not ops.maximum / ops.minimum: they promote through keras' result_type, which maps
# float64 to float32 on every backend but TensorFlow (BIT64_TO_BIT32_DTYPE in
# keras/src/backend/common/dtypes.py, "to be aligned with JAX's default"), so a float64
# gradient came back rounded under torch. ops.where keeps the dtype (and a NaN in ``a``).
XP = Namespace(
    maximum=lambda a, b: ops.where(a < b, b, a), minimum=lambda a, b: ops.where(a > b, b, a),
    where=ops.where, exp=ops.exp,
    expm1=ops.expm1, tanh=ops.tanh, erf=ops.erf, sigmoid=ops.sigmoid,
    softplus=ops.softplus, norm=lambda g: ops.sqrt(ops.sum(ops.square(g))), full=_full,
    cast=lambda t, like: ops.cast(t, like.dtype),
    relu=ops.relu, relu_grad=lambda g, y: ops.where(y > 0, g, ops.zeros_like(g)),
)
"""``keras.ops`` for the shared maths."""


class KerasBackend(Backend):
    name = "keras"
    cast_hint = "cast first, e.g. keras.ops.cast(x, 'float32')"
    param_hint = "Pass e.g. 0.5 or a float32 keras.Variable"
    xp = XP
    native = MappingProxyType({"relu": ops.relu})

    def check_input(self, x: Any, where: str) -> Any:
        if isinstance(x, keras.KerasTensor):
            raise BackflipTypeError(
                f"{where} got a symbolic keras.Input tensor; the functional ops take real "
                "tensors. In a functional model use the layers: GradientReversal, "
                "GradientScale or GradientClip."
            )
        require_gradients(where)
        return super().check_input(x, where)

    def to_tensor(self, x: Any) -> Any:
        return ops.convert_to_tensor(x)

    def dtype(self, x: Any) -> str:
        return keras.backend.standardize_dtype(x.dtype)

    def concrete(self, t: Any) -> float | None:
        return concrete(t)

    def cast(self, t: Any, dtype: str) -> Any:
        return ops.cast(ops.convert_to_tensor(t), dtype)

    def constant(self, value: float, dtype: str) -> Any:
        return ops.convert_to_tensor(representable(value, dtype), dtype=dtype)

    def times(self, x: Any, factor: Any) -> Any:
        return times_in_backward(x, factor, "a gradient op")

    def identity_vjp(self, x: Any, backward: Any, *static: Any) -> Any:
        def fn(x):
            return forward_identity(x), lambda g: backward(XP, g, *static)

        return custom_vjp(fn, backward.__name__)(x)

    def activation(self, x: Any, name: str, rule: Any, params: tuple) -> Any:
        kw = dict(params)

        def fn(x):
            y = self.forward(name, x, kw)
            return y, lambda g: self.backward(name, rule, kw, x, y, g)

        return custom_vjp(fn, "activation_with_rule")(x)

    def wrap_custom(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        """The Keras backend's own backflip ``custom_gradient``, with variables unwrapped."""
        native = _native_custom_gradient()
        op = native(fn) if native is not None else None

        @wraps(fn, name)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op is None:
                require_gradients(f"custom_gradient function {name}")
            args = tuple(_unwrap(a) for a in args)
            return op(*args, **{k: _unwrap(v) for k, v in kwargs.items()})

        return wrapper


@functools.cache
def _native_custom_gradient() -> Callable[..., Any] | None:
    """The custom_gradient of the backflip adapter for the Keras backend (None: no gradients)."""
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        return None
    return importlib.import_module(f"backflip.{backend}").custom_gradient


def _unwrap(a: Any) -> Any:
    return a.value if isinstance(a, keras.Variable) else a


KERAS = KerasBackend()
