"""Override the backward of every nonlinearity a Keras 3 model calls, provably, or raise.

:func:`override_gradients` routes the model's ``call`` (an instance attribute, removed
afterwards) through a block that is entered only while the model runs, and, for the
block's duration, swaps the Keras functions every activation goes through for
dispatchers (:mod:`backflip._override_patch`): the current backend's
``keras.src.backend.nn`` functions (which ``keras.ops.relu`` & co. and
``keras.activations.*`` call), ``keras.src.backend.numpy.tanh``, and the
``static_call`` of the ``ReLU``/``Mish`` operations behind ``keras.activations.relu``
and ``mish``. A layer's ``activation`` attribute is never touched: ``Dense(activation=
"relu")`` holds ``keras.activations.relu``, which calls the swapped function, so the
model's config and saved file are those of the plain model. Swapping the functions in
the ``keras.activations``/``keras.ops`` namespaces instead would miss both that
reference and a ``from keras.ops import relu`` made before the block. Calls outside the
model's ``call`` (the loss, the backward, your own code, other threads) are never
touched.

Nonlinearities it watches, on the TensorFlow, JAX and PyTorch backends:

* covered (routed to :func:`backflip.keras.activation_with_rule`): ``relu``,
  ``leaky_relu``, ``elu``, ``gelu`` (exact and ``approximate=True``, the tanh form
  that is ``keras.ops.gelu``'s default), ``silu``/``swish``,
  ``softplus`` as ``keras.ops.*`` or ``keras.activations.*`` calls, as a layer's
  ``activation=`` (name or function), and the layers ``ReLU`` (also with
  ``negative_slope``), ``LeakyReLU``, ``ELU`` and ``Activation``;
* watched but not covered (``strict=True`` raises, ``strict=False`` keeps the default
  gradient and lists the layer in the report): ``tanh``, ``sigmoid``, ``relu6``,
  ``relu`` with ``max_value`` or ``threshold``, ``mish``, ``selu``,
  ``celu``, ``glu``, ``hard_sigmoid``, ``hard_silu``/``hard_swish``, ``hard_tanh``,
  ``log_sigmoid``, ``softsign``, ``soft_shrink``, ``hard_shrink``, ``tanh_shrink``,
  ``sparse_plus``, ``squareplus``, ``sparse_sigmoid``, ``threshold``, and the
  ``PReLU`` layer (its slope is a weight).

Not watched: ``softmax``, ``log_softmax`` and ``sparsemax`` (normalisations, not
elementwise), ``exponential`` (``keras.ops.exp`` is general arithmetic), max pooling,
a ReLU spelled ``keras.ops.maximum(x, 0)``, and backend calls such as ``tf.nn.relu``
in a layer's ``call`` (:func:`backflip.tensorflow.override_gradients` covers those).

Compiled code: the block acts while Python runs. Keras's own ``predict``/``fit``/
``evaluate`` functions are reset for the block and put back afterwards, so they trace
with the rule inside and never keep it. A compiled function of your own around the
model follows the rule only if it traces inside the block; one traced before keeps the
default gradient (the report shows ``seen == 0``). On the TensorFlow backend, a
``tf.function`` of yours that traces the model inside the block raises, since its
trace would keep the rule afterwards: pass it to
:func:`backflip.tensorflow.override_gradients`, which swaps its traces out and back.
A ``jax.jit`` keeps the rule in the traces it made inside the block: create it there.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import keras
import numpy as np
from keras import ops

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._override_patch import (
    MANAGED_TRACES,
    Block,
    Table,
    Watch,
    add_backward_files,
    owner_of,
    pass_through,
    patched,
)
from backflip._override_report import OverrideReport, rule_name
from backflip._override_verify import Checker
from backflip.keras._backend import require_gradients
from backflip.keras._ops import activation_with_rule
from backflip.rules import check_rule

__all__ = ["OverrideReport", "override_gradients"]

Rule = str | Callable[[Any, Any, Any], Any]

_KERAS_DIR = os.path.dirname(keras.__file__)
_COMPILED = ("train_function", "test_function", "predict_function")
_ACTIVE: set[int] = set()  # ids of the models inside an override_gradients block

_NN_UNCOVERED = (
    "relu6 sigmoid sparse_sigmoid tanh tanh_shrink softsign soft_shrink sparse_plus "
    "squareplus log_sigmoid hard_sigmoid hard_silu selu celu glu hard_tanh hard_shrink "
    "threshold"
).split()


def _bind(label: str, activation: str | None, names: tuple = (), defaults: dict | None = None):
    """``(x, activation, params, label)`` of a call; ``activation=None``: not covered."""
    defaults = defaults or {}

    def bind(x, *rest, **kwargs):
        if activation is None:
            return x, None, {}, label
        params = {**defaults, **dict(zip(names, rest, strict=False)), **kwargs}
        return x, activation, {k: float(v) for k, v in params.items()}, label

    return bind


def _bind_gelu(x, approximate=True):
    if approximate:  # keras.ops.gelu's default: the tanh approximation
        return x, "gelu", {"approximate": "tanh"}, "keras.ops.gelu(approximate=True)"
    return x, "gelu", {}, "keras.ops.gelu"


def _bind_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """``ReLU.static_call``, behind ``keras.activations.relu`` and the ``ReLU`` layer."""
    if max_value is None and threshold == 0:
        if negative_slope == 0:
            return x, "relu", {}, "keras.activations.relu"
        return x, "leaky_relu", {"negative_slope": float(negative_slope)}, "keras.activations.relu"
    extra = ", ".join(
        f"{k}={v}" for k, v in (("max_value", max_value), ("threshold", threshold))
        if v not in (None, 0, 0.0)
    )  # fmt: skip
    return x, None, {}, f"keras.activations.relu({extra})"


def _bind_layer(label):
    return lambda self, inputs, *args, **kwargs: (inputs, None, {}, label)


@functools.cache
def _table(backend: str) -> Table:
    """The watches of the current Keras backend (the functions ``keras.ops`` calls)."""
    from keras.src import backend as kb
    from keras.src.activations import activations as ka

    nn = kb.nn
    watches = [
        Watch(nn, "relu", _bind("keras.ops.relu", "relu")),
        Watch(
            nn,
            "leaky_relu",
            _bind(
                "keras.ops.leaky_relu", "leaky_relu", ("negative_slope",), {"negative_slope": 0.2}
            ),
        ),
        Watch(nn, "elu", _bind("keras.ops.elu", "elu", ("alpha",), {"alpha": 1.0})),
        Watch(nn, "gelu", _bind_gelu),
        Watch(nn, "silu", _bind("keras.ops.silu", "silu")),
        Watch(nn, "softplus", _bind("keras.ops.softplus", "softplus")),
        Watch(ka.ReLU, "static_call", _bind_relu),
        Watch(ka.Mish, "static_call", _bind("keras.activations.mish", None)),
        Watch(kb.numpy, "tanh", _bind("keras.ops.tanh", None)),
        Watch(keras.layers.PReLU, "call", _bind_layer("keras.layers.PReLU")),
    ]
    watches += [
        Watch(nn, name, _bind(f"keras.ops.{name}", None))
        for name in _NN_UNCOVERED
        if name in vars(nn)
    ]
    _add_backward_files(backend)
    return Table(tuple(watches), activation_with_rule, _accepts)


def _add_backward_files(backend: str) -> None:
    if backend == "tensorflow":
        from tensorflow.python.eager import backprop
        from tensorflow.python.ops import gradients_util

        add_backward_files(backprop.__file__, gradients_util.__file__)
    elif backend == "jax":
        from jax._src.interpreters import ad

        add_backward_files(ad.__file__)
    elif backend == "torch":
        import torch.autograd

        add_backward_files(torch.autograd.__file__)


try:
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope as _in_symbolic_scope
except ImportError:  # pragma: no cover - a Keras without it

    def _in_symbolic_scope() -> bool:
        return False


def _accepts(x: Any) -> bool:
    """A real floating-point tensor (not a symbolic one while Keras infers shapes)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or isinstance(x, keras.KerasTensor) or _in_symbolic_scope():
        return False
    return "float" in keras.backend.standardize_dtype(dtype)


def _where(frame: FrameType) -> str:
    filename = frame.f_code.co_filename
    if "__autograph_generated_file" in filename:  # converted code: no source line
        return ""
    return f" at {os.path.basename(filename)}:{frame.f_lineno}"


def name_site(label: str, frames: list[FrameType], layers: dict[int, Any]) -> str:
    """``layer 'dense' (Dense)``, or ``label in Net.call of 'net' at file.py:12``."""
    user = None
    for frame in frames:
        owner = owner_of(frame)
        filename = frame.f_code.co_filename
        if owner is not None and id(owner) in layers:
            name, kind = owner.name, type(owner).__name__
            if filename.startswith(_KERAS_DIR):
                return f"layer {name!r} ({kind})"
            return f"{label} in {kind}.{frame.f_code.co_name} of {name!r}{_where(frame)}"
        if user is None and not filename.startswith(_KERAS_DIR):
            user = frame
    return label + ("" if user is None else _where(user))


def check_not_in_a_foreign_trace(where: str) -> None:
    """Raise if a tf.function of the user's is tracing the model (TensorFlow backend).

    Its trace would keep the rule after the block (and one traced before the block keeps
    the default gradients). Keras's own predict/fit functions and the tf.functions given
    to ``backflip.tensorflow.override_gradients`` are managed by their block.
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return
    from tensorflow.python.eager.polymorphic_function.polymorphic_function import Function

    frame = sys._getframe(1)
    while frame is not None:
        fn = owner_of(frame)
        if isinstance(fn, Function) and id(fn) not in MANAGED_TRACES:
            python = inspect.unwrap(fn.python_function)  # through do_not_convert & co.
            code = getattr(python, "__code__", None)
            name = getattr(python, "__name__", "function")
            if code is None or not code.co_filename.startswith(_KERAS_DIR):
                raise pass_through(
                    BackflipValueError(
                        f"{where} cannot follow the model into the tf.function "
                        f"{name!r}: it traces the model once, so its trace "
                        "would keep the rule after the block (and one traced before the block "
                        "keeps the default gradients). Pass that tf.function to "
                        "backflip.tensorflow.override_gradients instead, or call the model "
                        "eagerly inside the block."
                    )
                )
        frame = frame.f_back


def _all_layers(model: Any) -> dict[int, Any]:
    flatten = getattr(model, "_flatten_layers", None)
    found = flatten(include_self=True, recursive=True) if flatten else [model]
    return {id(layer): layer for layer in found}


# --- report.verify() -------------------------------------------------------------


def vjp(fn: Callable[[Any], Any], x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, dL/dx)`` of ``y = fn(x)`` for upstream ``g``, as NumPy, on the Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return np.asarray(y), np.asarray(tape.gradient(y, xt, output_gradients=tf.constant(g)))
    if backend == "jax":
        import jax

        y, pull = jax.vjp(fn, jax.numpy.asarray(x))
        return np.asarray(y), np.asarray(pull(jax.numpy.asarray(g, y.dtype))[0])
    import torch

    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt)
    (dx,) = torch.autograd.grad(y, xt, torch.as_tensor(g, dtype=y.dtype))
    return y.detach().numpy(), dx.numpy()


def _gradient(x: np.ndarray, activation: str, rule: Rule, params: dict, g: np.ndarray):
    """``dL/dx`` of ``activation_with_rule`` at ``x`` for cotangent ``g`` (NumPy)."""
    return vjp(lambda v: activation_with_rule(v, activation, rule, **params), x, g)[1]


#: report.verify()'s checker on the current Keras backend
CHECKER = Checker("Keras", _gradient, tensor=ops.convert_to_tensor, numpy=ops.convert_to_numpy)


# --- the context manager -----------------------------------------------------------


@contextmanager
def override(
    model: Any,
    rule: Rule,
    strict: bool,
    extra_tables: tuple[Table, ...] = (),
    checks: tuple[Checker, ...] = (CHECKER,),
    where: str = "backflip.keras.override_gradients",
) -> Iterator[OverrideReport]:
    """:func:`override_gradients` with more watches (the TensorFlow adapter's ``tf.nn``)."""
    if not isinstance(model, keras.Layer):
        raise BackflipTypeError(
            f"{where} expects a Keras model or layer; got {type(model).__name__}. For a "
            "plain function, call backflip.keras.activation_with_rule in it."
        )
    require_gradients("override_gradients")
    check_rule(rule)
    if id(model) in _ACTIVE:
        raise BackflipValueError(
            f"override_gradients is already active on this {type(model).__name__}; one rule "
            "per model at a time: leave the outer block first."
        )
    report = OverrideReport(rule=rule_name(rule), _rule=rule, _checks=checks)
    layers: dict[int, Any] = {}

    on_tf = keras.backend.backend() == "tensorflow"

    def refresh() -> None:  # once per forward: layers may be added between calls
        if on_tf:
            check_not_in_a_foreign_trace(where)
        layers.clear()
        layers.update(_all_layers(model))

    tables = (_table(keras.backend.backend()), *extra_tables)
    block = Block(report, rule, strict, tables,
                  lambda label, frames: name_site(label, frames, layers), refresh)  # fmt: skip
    had_own_call, own_call = "call" in vars(model), vars(model).get("call")
    inner = model.call

    def call(*args: Any, **kwargs: Any) -> Any:
        return block.run(inner, *args, **kwargs)

    call.__signature__ = inspect.signature(inner)  # type: ignore[attr-defined]
    compiled = {n: vars(model)[n] for n in _COMPILED if n in vars(model)}
    _ACTIVE.add(id(model))
    try:
        with patched(tables):
            model.call = call
            for name in compiled:  # retrace Keras's predict/fit functions inside the block
                setattr(model, name, None)
            yield report
    finally:
        _ACTIVE.discard(id(model))
        if had_own_call:
            model.call = own_call
        elif "call" in vars(model):
            del model.call
        for name, fn in compiled.items():
            setattr(model, name, fn)


@contextmanager
def override_gradients(model: Any, rule: Rule, strict: bool = True) -> Iterator[OverrideReport]:
    """Change the backward of every nonlinearity a Keras ``model`` calls while the block runs.

    The Keras counterpart of :func:`backflip.torch.override_gradients`, with the same
    rules, report and strictness: forward values are unchanged; the backward of each
    covered nonlinearity follows ``rule`` (``"vanilla"``, ``"guided"``,
    ``"deconvnet"`` or ``fn(x, y, g)``; the maths is in :mod:`backflip.rules`); with
    ``strict=True`` a watched nonlinearity no rule covers raises
    :class:`~backflip.BackflipValueError` naming the layer. What is covered, and how
    compiled functions behave, is in this module's docstring. The model, its layers
    and the swapped Keras functions are restored when the block exits, also on error.

    >>> import numpy as np, keras
    >>> fc = keras.layers.Dense(2, activation="relu", name="fc")
    >>> model = keras.Sequential([keras.Input((2,)), fc])
    >>> with override_gradients(model, "guided") as report:
    ...     _ = model(np.ones((1, 2), "float32"))
    >>> (report.seen, report.overridden, list(report.sites))
    (1, 1, ["layer 'fc' (Dense)"])
    """
    with override(model, rule, strict) as report:
        yield report
