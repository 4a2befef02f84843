"""Override the backward of every nonlinearity a tf.function or Keras model calls, or raise.

:func:`override_gradients` takes a ``tf.function`` or a Keras model (Keras 3 on the
TensorFlow backend). For the block's duration it swaps ``tf.nn.relu`` & co. in the
``tf``, ``tf.nn`` and ``tf.math`` namespaces (and, when Keras is imported, the Keras
functions :mod:`backflip.keras._override` watches) for dispatchers that apply
:func:`backflip.tensorflow.activation_with_rule` (a ``tf.custom_gradient``) to calls
made while the model runs, eagerly or while a ``tf.function`` traces:

* a **tf.function**: while it is called inside the block its trace cache is replaced
  by an empty one, so each call retraces with the rule; when the block exits the
  earlier traces come back and the block's are dropped, so a trace made before the
  block never hides the rule, and none made inside keeps it. The counts are per trace
  (the nonlinearities written into the graph), ``forwards`` per call. Works with
  ``tf.config.run_functions_eagerly(True)`` too. A tf.function called inside it that
  was traced before the block keeps its own trace: pass the outer one and create inner
  ones inside the block, or pass them too.
* a **Keras model**: :func:`backflip.keras.override_gradients` plus the ``tf.nn``
  functions, for custom layers that call TensorFlow directly. A tf.function of yours
  that traces the model raises (its trace would outlive the block): pass that
  tf.function instead.

Why not ``tf.Graph.gradient_override_map``: it only applies to ops created inside
its scope in a graph being built, so in eager mode (TF2's default) and for a
tf.function traced outside the scope it silently does nothing, and it maps op types
(``Relu``), which GELU and SiLU are not.

Covered: ``tf.nn.relu``, ``tf.nn.leaky_relu``, ``tf.nn.elu``,
``tf.nn.gelu`` (exact and ``approximate=True``), ``tf.nn.silu``/``tf.nn.swish`` (``beta=1``),
``tf.nn.softplus``/``tf.math.softplus``. Watched but not covered (``strict=True``
raises): ``silu`` with another ``beta``, ``relu6``,
``crelu``, ``selu``, ``softsign``, ``sigmoid`` and ``tanh`` (in every namespace) and
``tf.math.log_sigmoid``. Not watched: ``tf.nn.softmax``/``log_softmax``
(normalisations), ``tf.maximum(x, 0)``, ``tf.raw_ops`` and code bound to the
original functions before the block (``from tensorflow.nn import relu``).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.eager.polymorphic_function.polymorphic_function import Function

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._override_patch import (
    MANAGED_TRACES,
    Block,
    Table,
    Watch,
    add_backward_files,
    owner_of,
    patched,
)
from backflip._override_report import OverrideReport, rule_name
from backflip._override_verify import Checker
from backflip.rules import check_rule
from backflip.tensorflow._ops import activation_with_rule

__all__ = ["OverrideReport", "override_gradients"]

Rule = str | Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]

_TF_DIR = os.path.dirname(tf.__file__)
_WHERE = "backflip.tensorflow.override_gradients"
_BLOCKS: dict[int, Block] = {}  # id(tf.function) -> its block


def _input(args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
    """The tensor argument (``features`` or ``x``), the other positionals, the keywords."""
    kwargs = dict(kwargs)
    kwargs.pop("name", None)
    if args:
        return args[0], args[1:], kwargs
    return kwargs.pop("features", kwargs.pop("x", None)), (), kwargs


def _bind(label: str, activation: str | None, names: tuple = (), rename: dict | None = None,
          defaults: dict | None = None):  # fmt: skip
    """``(x, activation, params, label)`` of a call; ``activation=None``: not covered."""
    rename, defaults = rename or {}, defaults or {}

    def bind(*args, **kwargs):
        x, rest, kwargs = _input(args, kwargs)
        if activation is None:
            return x, None, {}, label
        params = {**defaults, **dict(zip(names, rest, strict=False)), **kwargs}
        return x, activation, {rename.get(k, k): float(v) for k, v in params.items()}, label

    return bind


def _bind_gelu(label):
    def bind(*args, **kwargs):
        x, rest, kwargs = _input(args, kwargs)
        if kwargs.get("approximate", rest[0] if rest else False):
            return x, "gelu", {"approximate": "tanh"}, f"{label}(approximate=True)"
        return x, "gelu", {}, label

    return bind


def _bind_silu(label):
    def bind(*args, **kwargs):
        x, rest, kwargs = _input(args, kwargs)
        beta = float(kwargs.get("beta", rest[0] if rest else 1.0))
        if beta != 1.0:
            return x, None, {}, f"{label}(beta={beta})"
        return x, "silu", {}, label

    return bind


def _accepts(x: Any) -> bool:
    """A floating-point tensor (not a Keras symbolic one)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or type(x).__name__ == "KerasTensor":
        return False
    try:
        return tf.as_dtype(dtype).is_floating
    except TypeError:
        return False


@functools.cache
def _table() -> Table:
    namespaces = {"tf": tf, "tf.nn": tf.nn, "tf.math": tf.math}
    covered = {
        "relu": lambda label: _bind(label, "relu"),
        "leaky_relu": lambda label: _bind(
            label, "leaky_relu", ("alpha",), {"alpha": "negative_slope"}, {"alpha": 0.2}
        ),
        "elu": lambda label: _bind(label, "elu", defaults={"alpha": 1.0}),
        "gelu": _bind_gelu,
        "silu": _bind_silu,
        "swish": _bind_silu,
        "softplus": lambda label: _bind(label, "softplus"),
    }
    uncovered = "relu6 crelu selu softsign sigmoid tanh log_sigmoid".split()
    watches = []
    for prefix, ns in namespaces.items():
        for name in (*covered, *uncovered):
            if name in vars(ns) and callable(vars(ns)[name]):
                label = f"{prefix}.{name}"
                bind = covered[name](label) if name in covered else _bind(label, None)
                watches.append(Watch(ns, name, bind))
    from tensorflow.python.eager import backprop
    from tensorflow.python.ops import gradients_util

    add_backward_files(backprop.__file__, gradients_util.__file__)
    return Table(tuple(watches), activation_with_rule, _accepts)


# --- report.verify() -------------------------------------------------------------


def _gradient(x: np.ndarray, activation: str, rule: Rule, params: dict, g: np.ndarray):
    """``dL/dx`` of ``activation_with_rule`` at ``x`` for cotangent ``g`` (NumPy)."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = activation_with_rule(xt, activation, rule, **params)
    return tape.gradient(y, xt, output_gradients=tf.constant(g)).numpy()


_CHECKER = Checker("TensorFlow", _gradient, tensor=tf.constant)


# --- tf.function -------------------------------------------------------------------


@functools.cache
def _watched_class(cls: type) -> type:
    """``cls`` whose ``__call__`` runs inside the function's block."""

    class Watched(cls):  # type: ignore[misc, valid-type]
        def __call__(self, *args, **kwargs):
            return _BLOCKS[id(self)].run(super().__call__, *args, **kwargs)

    Watched.__name__, Watched.__qualname__ = cls.__name__, cls.__qualname__
    Watched.__module__ = cls.__module__
    return Watched


def _set_cache(fn: Function, cache: Any) -> None:
    fn._function_cache = cache
    for name in ("_variable_creation_config", "_no_variable_creation_config"):
        config = getattr(fn, name, None)
        if config is not None:
            config.function_cache = cache


def _function_name(fn: Function) -> str:
    return getattr(fn.python_function, "__name__", None) or type(fn.python_function).__name__


def _where(frame: FrameType) -> str:
    return f" at {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def _name_site(label: str, frames: list[FrameType], fn: Function) -> str:
    """A Keras layer's name, else ``label in tf.function 'f' at file.py:12``."""
    keras = sys.modules.get("keras")
    user = None
    for frame in frames:
        owner = owner_of(frame)
        if keras is not None and isinstance(owner, keras.Layer):
            from backflip.keras._override import name_site

            return name_site(label, [frame], {id(owner): owner})
        filename = frame.f_code.co_filename
        if (
            user is None
            and not filename.startswith(_TF_DIR)
            and ("__autograph_generated_file" not in filename)
        ):
            user = frame
    site = f"{label} in tf.function {_function_name(fn)!r}"
    return site if user is None else site + _where(user)


def _keras_tables() -> tuple[Table, ...]:
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() != "tensorflow":
        return ()
    from backflip.keras._override import _table as keras_table

    return (keras_table("tensorflow"),)


@contextmanager
def _override_function(fn: Function, rule: Rule, strict: bool) -> Iterator[OverrideReport]:
    missing = [n for n in ("_function_cache", "_variable_creation_config") if n not in vars(fn)]
    if missing:  # pragma: no cover - another TensorFlow's tf.function internals
        raise BackflipTypeError(
            f"{_WHERE} needs tf.function internals this TensorFlow {tf.__version__} lacks "
            f"({', '.join(missing)}). Call backflip.tensorflow.activation_with_rule in the "
            "function instead."
        )
    if id(fn) in _BLOCKS:
        raise BackflipValueError(
            "override_gradients is already active on this tf.function; one rule per "
            "function at a time: leave the outer block first."
        )
    report = OverrideReport(rule=rule_name(rule), _rule=rule, _checks=(_CHECKER,))
    tables = (_table(), *_keras_tables())
    block = Block(report, rule, strict, tables,
                  lambda label, frames: _name_site(label, frames, fn))  # fmt: skip
    cls, saved = type(fn), fn._function_cache
    _BLOCKS[id(fn)] = block
    MANAGED_TRACES.add(id(fn))
    try:
        with patched(tables):
            _set_cache(fn, type(saved)())  # the traces made in the block go here
            fn.__class__ = _watched_class(cls)
            yield report
    finally:
        fn.__class__ = cls
        _set_cache(fn, saved)
        MANAGED_TRACES.discard(id(fn))
        del _BLOCKS[id(fn)]


@contextmanager
def override_gradients(model: Any, rule: Rule, strict: bool = True) -> Iterator[OverrideReport]:
    """Change the backward of every nonlinearity a tf.function or Keras model calls.

    The TensorFlow counterpart of :func:`backflip.torch.override_gradients`, with the
    same rules, report and strictness: forward values are unchanged; the backward of
    each covered nonlinearity called while ``model`` runs (eagerly or while it traces)
    follows ``rule`` (``"vanilla"``, ``"guided"``, ``"deconvnet"`` or ``fn(x, y, g)``;
    the maths is in :mod:`backflip.rules`); with ``strict=True`` a watched
    nonlinearity no rule covers raises :class:`~backflip.BackflipValueError` naming the
    call site. What is covered, and how traces are handled, is in this module's
    docstring. Everything is restored when the block exits, also on error.

    >>> import tensorflow as tf
    >>> f = tf.function(lambda x: tf.nn.relu(x) * 2.0)
    >>> x = tf.constant([1.0, 1.0, -1.0])
    >>> with override_gradients(f, "guided") as report, tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = f(x)
    >>> tape.gradient(y, x, output_gradients=tf.constant([1.0, -1.0, 1.0])).numpy()
    array([2., 0., 0.], dtype=float32)
    >>> (report.seen, report.overridden)
    (1, 1)
    """
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Layer):
        backend = keras.backend.backend()
        if backend != "tensorflow":
            raise BackflipTypeError(
                f"{_WHERE} got a Keras model on the {backend!r} backend; use "
                "backflip.keras.override_gradients for it (it covers every backend)."
            )
        from backflip.keras._override import CHECKER as KERAS_CHECKER
        from backflip.keras._override import override

        checks = (_CHECKER, KERAS_CHECKER)  # a layer may call tf.nn or keras.ops
        with override(model, rule, strict, (_table(),), checks, _WHERE) as report:
            yield report
        return
    if not isinstance(model, Function):
        raise BackflipTypeError(
            f"{_WHERE} expects a tf.function or a Keras model; got {type(model).__name__}. "
            "Wrap a plain function in tf.function, or call "
            "backflip.tensorflow.activation_with_rule in it."
        )
    check_rule(rule)
    with _override_function(model, rule, strict) as report:
        yield report
