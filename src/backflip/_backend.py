"""The shared backend layer: every adapter's ops, written once over a few primitives.

An adapter (``backflip.jax``, ``backflip.tensorflow``, ...) subclasses :class:`Backend`
with what truly differs in its framework: how to make a tensor and read its dtype,
how to attach a backward to an identity (JAX's ``custom_jvp``, PyTensor's cached
``OpFromGraph``, ``tf.custom_gradient``, a ``torch.autograd.Function``), and a small
array namespace (:class:`Namespace`). Everything else is here, once:

* the argument checks (:meth:`Backend.check_input`, :meth:`Backend.param`), so every
  backend raises the same :class:`~backflip.BackflipError` with the same message;
* the backward maths of every op and rule (:func:`clip_backward`,
  :func:`clip_norm_backward`, :func:`rule_backward`, the activation table in
  :mod:`backflip._activations`), whose NumPy references are in :mod:`backflip.rules`;
* the eight public functions and their docstrings (:func:`export`): an adapter passes
  only its ``>>>`` examples.

This module imports no framework (``import backflip`` stays framework-free).

>>> from backflip._api import CORE_OPS
>>> sorted(_DOCS) == sorted(CORE_OPS)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np

from backflip import rules
from backflip._activations import DERIVATIVES, EXTRA_PARAMS, FORWARDS, check_params
from backflip._api import CORE_OPS
from backflip._custom_contract import (
    check_decoratee,
    gradients_tuple,
    split_output,
    tensor_positions,
    wraps,
)
from backflip._errors import BackflipTypeError
from backflip._validate import check_clip_bounds, check_factor, check_lambd, check_max_norm

__all__ = [
    "NUMPY",
    "Backend",
    "CustomCall",
    "Namespace",
    "clip_backward",
    "clip_norm_backward",
    "export",
    "relu_backward",
    "representable",
    "rule_backward",
]


class Namespace(SimpleNamespace):
    """The array functions the shared backward maths uses, from one framework.

    ``maximum``, ``minimum``, ``where(cond, a, b)``, ``norm(g)`` (the L2 norm of the
    whole tensor), ``full(value, like)`` (a 0-d tensor of ``like``'s dtype),
    ``cast(t, like)``, ``exp``, ``expm1``, ``erf``, ``tanh``, ``sigmoid``, ``softplus``;
    where :meth:`Backend.backward` is used, ``relu`` and ``relu_grad(g, y)``
    (``g * 1[y > 0]``). ``+ - * / >`` are the tensors' own operators.
    """


NUMPY = Namespace(
    maximum=np.maximum, minimum=np.minimum, where=np.where, exp=np.exp, expm1=np.expm1,
    tanh=np.tanh, erf=np.vectorize(math.erf, otypes=[np.float64]),
    sigmoid=lambda x: 1.0 / (1.0 + np.exp(-x)), softplus=lambda x: np.logaddexp(0.0, x),
    norm=lambda g: np.sqrt(np.sum(np.square(g))),
    full=lambda v, like: np.asarray(representable(v, str(np.asarray(like).dtype))),
    cast=lambda t, like: np.asarray(t).astype(np.asarray(like).dtype),
    relu=lambda g: np.maximum(g, 0).astype(g.dtype), relu_grad=lambda g, y: np.where(y > 0, g, 0),
)
"""The :class:`Namespace` of NumPy: the shared maths evaluated as a reference check."""


def representable(value: float, dtype: str) -> Any:
    """``value`` in ``dtype`` (inf beyond its range, without NumPy's overflow warning).

    >>> representable(1e300, "float32"), representable(0.1, "float64")
    (np.float32(inf), np.float64(0.1))
    """
    if dtype not in ("float16", "float32", "float64"):
        return value  # bfloat16 and the like: the framework converts
    with np.errstate(over="ignore"):
        return np.asarray(value, np.float64).astype(dtype)[()]


# --- the backward maths, once (NumPy references: backflip.rules) ----------------------


def clip_backward(xp: Namespace, g: Any, lo: float | None, hi: float | None) -> Any:
    """``dL/dx = clip(g, lo, hi)`` elementwise; a ``None`` bound is no bound."""
    if lo is not None:
        g = xp.maximum(g, xp.full(lo, g))
    if hi is not None:
        g = xp.minimum(g, xp.full(hi, g))
    return g


def clip_norm_backward(xp: Namespace, g: Any, max_norm: float) -> Any:
    """``dL/dx = g * min(1, max_norm / ||g||_2)``; a zero ``g`` stays zero.

    Computed as ``(g / ||g||) * max_norm`` where clipping applies, in the norm's dtype:
    never ``g * max_norm`` (which overflows for a large valid ``max_norm``, as
    ``tf.clip_by_norm`` does) nor ``max_norm / ||g||`` (which underflows for a tiny
    one); a ``max_norm`` beyond the dtype's range means no clipping.
    """
    norm = xp.norm(g)
    limit = xp.full(max_norm, norm)  # inf where max_norm exceeds the dtype's range
    clipped = xp.cast(g, norm) / xp.where(norm > 0, norm, xp.full(1.0, norm)) * limit
    return xp.where(norm > limit, xp.cast(clipped, g), g)


def rule_backward(
    xp: Namespace, rule: Any, vjp: Callable[[Any], Any], x: Any, y: Any, g: Any
) -> Any:
    """``dL/dx`` of a nonlinearity rule (:mod:`backflip.rules`); ``vjp(g) = g * act'(x)``.

    vanilla ``vjp(g)``; guided ``vjp(g * 1[g > 0])`` (act' is elementwise); deconvnet
    ``g * 1[g > 0]``; a user rule ``rule(x, y, g)``.
    """
    if callable(rule):
        return rule(x, y, g)
    if rule == "deconvnet":
        return xp.where(g > 0, g, xp.full(0.0, g))
    if rule == "guided":
        g = xp.where(g > 0, g, xp.full(0.0, g))
    return vjp(g)


def relu_backward(xp: Namespace, rule: str, y: Any, g: Any) -> Any:
    """ReLU's built-in rules from its output ``y``, in the fewest ops.

    vanilla ``relu_grad(g, y) = g * 1[y > 0]``; guided ``relu_grad(relu(g), y)``;
    deconvnet ``relu(g)`` (the rules of :func:`rule_backward`, as PyTorch's own ReLU
    backward computes them).
    """
    if rule == "deconvnet":
        return xp.relu(g)
    if rule == "guided":
        g = xp.relu(g)
    return xp.relu_grad(g, y)


# --- custom_gradient, once ----------------------------------------------------------


class CustomCall:
    """One call of a ``custom_gradient`` function: which inputs are tensors, and the rule.

    ``arrays`` are the tensor positional arguments, then the tensor keyword arguments;
    :meth:`run` calls the user's function with new values for them, and
    :meth:`gradients` turns ``grad_fn``'s result into one entry per array (``None`` for
    the keyword ones, which are constants).
    """

    def __init__(self, fn: Callable[..., Any], name: str, args: tuple, kwargs: dict,
                 is_tensor: Callable[[Any], bool]) -> None:
        self.fn, self.name, self.args, self.kwargs = fn, name, args, kwargs
        self.positions = tensor_positions(args, is_tensor)
        self.keys = tuple(k for k, v in kwargs.items() if is_tensor(v))
        self.arrays = (*(args[i] for i in self.positions), *(kwargs[k] for k in self.keys))

    def run(self, *arrays: Any) -> tuple[Any, Callable[..., Any]]:
        """``fn`` on the arguments with ``arrays`` in the tensors' places: ``(y, grad_fn)``."""
        full = list(self.args)
        for i, a in zip(self.positions, arrays, strict=False):
            full[i] = a
        kw = {**self.kwargs, **dict(zip(self.keys, arrays[len(self.positions):], strict=True))}
        return split_output(self.fn(*full, **kw), self.name)

    def gradients(self, grad_fn: Callable[..., Any], g: Any) -> tuple[Any, ...]:
        """``grad_fn(g)`` checked by the contract, one entry per array."""
        grads = gradients_tuple(grad_fn(g), len(self.args), self.name)
        return (*(grads[i] for i in self.positions), *(None for _ in self.keys))


# --- what a framework supplies ------------------------------------------------------


class Backend:
    """The primitives of one framework; subclass and fill in what differs.

    Attributes: ``xp`` (a :class:`Namespace`), ``word`` ("tensor" or "array", for
    messages), ``cast_hint`` and ``param_hint`` (how to fix a bad dtype, in the
    framework's words), ``param_dtypes`` ("float", or "number" where an integer 0-d
    tensor is a valid λ).
    """

    name = "backend"
    tensor_type = "Any"
    """The tensor type in the public signatures (``"jax.Array"``)."""
    word = "tensor"
    param_dtypes = "float"
    article = "a"
    cast_hint = "cast it to a floating-point dtype first"
    param_hint = "Pass e.g. 0.5"
    xp: Namespace

    # tensors ----------------------------------------------------------------------
    def to_tensor(self, x: Any) -> Any:
        raise NotImplementedError

    def dtype(self, x: Any) -> str:
        """The dtype's name (``"float32"``)."""
        raise NotImplementedError

    def is_param_tensor(self, value: Any) -> bool:
        """Whether a λ / factor is a tensor (not a Python number)."""
        return hasattr(value, "dtype") and not isinstance(value, float | int)

    def ndim(self, t: Any) -> int | None:
        return len(t.shape)

    def shape(self, t: Any) -> tuple:
        """The (static) shape, for messages."""
        return tuple(t.shape)

    def concrete(self, t: Any) -> float | None:
        """A tensor's value as a float, or ``None`` while it is symbolic (traced)."""
        return float(t)

    def cast(self, t: Any, dtype: str) -> Any:
        raise NotImplementedError

    def constant(self, value: float, dtype: str) -> Any:
        raise NotImplementedError

    def is_tensor(self, a: Any) -> bool:
        """Whether a ``custom_gradient`` argument receives a gradient."""
        raise NotImplementedError

    # gradient mechanisms ------------------------------------------------------------
    def times(self, x: Any, factor: Any) -> Any:
        """``y = x``, ``dL/dx = factor * dL/dy`` at every order (``factor`` 0-d, x's dtype)."""
        raise NotImplementedError

    def reverse(self, x: Any, lambd: Any) -> Any:
        """``y = x``, ``dL/dx = -lambd * dL/dy``: :meth:`times` by ``-lambd`` unless overridden."""
        return self.times(x, -lambd)

    def identity_vjp(self, x: Any, backward: Callable[..., Any], *static: Any) -> Any:
        """``y = x``, ``dL/dx = backward(self.xp, g, *static)``; ``static`` hashable."""
        raise NotImplementedError

    def activation(self, x: Any, name: str, rule: Any, params: tuple) -> Any:
        """``y = act(x)``, ``dL/dx`` by :func:`rule_backward`; ``params`` sorted pairs."""
        raise NotImplementedError

    def custom(self, call: CustomCall) -> Any:
        """The output of a :class:`CustomCall` with its rule attached."""
        raise NotImplementedError

    def wrap_custom(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        """``custom_gradient(fn)``: each call becomes a :class:`CustomCall` for :meth:`custom`."""

        @wraps(fn, name)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = CustomCall(fn, name, args, kwargs, self.is_tensor)
            if not call.arrays:  # nothing to differentiate
                return split_output(fn(*args, **kwargs), name)[0]
            return self.custom(call)

        return wrapper

    native: Mapping[str, Callable[..., Any]] = MappingProxyType({})
    """The framework's own forwards, ``name -> fn(x, **params)``, used where given."""

    def forward(self, name: str, x: Any, params: dict) -> Any:
        """``act(x)``: the framework's own function, or the shared formula."""
        if name in self.native:
            return self.native[name](x, **params)
        return FORWARDS[name](self.xp, x, **params)

    def backward(self, name: str, rule: Any, params: dict, x: Any, y: Any, g: Any) -> Any:
        """``dL/dx`` of ``rule`` with ``act'`` from the shared table (:mod:`backflip._activations`).

        ReLU's built-in rules take :func:`relu_backward`'s path (from the output, with the
        framework's fused ReLU gradient where it has one).
        """
        if name == "relu" and not callable(rule):
            return relu_backward(self.xp, rule, y, g)
        return rule_backward(
            self.xp, rule, lambda g: g * DERIVATIVES[name](self.xp, x, **params), x, y, g)

    # checks, once -------------------------------------------------------------------
    def check_input(self, x: Any, where: str) -> Any:
        """``x`` as a floating-point tensor, or :class:`~backflip.BackflipTypeError`."""
        t = self.to_tensor(x)
        dtype = self.dtype(t)
        if "float" not in dtype:
            raise BackflipTypeError(
                f"{where} needs a floating-point {self.word}; got dtype {dtype}. Integer "
                f"and bool {self.word}s have no gradient: {self.cast_hint}."
            )
        return t

    def param(self, value: Any, dtype: str, name: str, where: str,
              check: Callable[[object, str], float] = check_lambd) -> Any:
        """A 0-d tensor of ``dtype`` holding ``value`` (a number or a 0-d tensor).

        A number or a concrete tensor is checked by ``check`` (``check_lambd`` or
        ``check_factor``); a symbolic one (inside ``jit`` / ``tf.function`` / a
        PyTensor graph) only by dtype and rank, which is what lets a λ that changes
        every step run without recompiling.
        """
        if not self.is_param_tensor(value):
            return self.constant(check(value, where), dtype)
        t = value
        vdtype = self.dtype(t)
        if not ("float" in vdtype or ("int" in vdtype and self.param_dtypes == "number")):
            raise BackflipTypeError(
                f"`{name}` of {where} must be a float or a floating-point 0-d {self.word}; "
                f"got {self.article} {self.word} of dtype {vdtype}. {self.param_hint}."
            )
        if self.ndim(t) not in (0, None):
            raise BackflipTypeError(
                f"`{name}` of {where} must be a 0-d {self.word}; got shape "
                f"{self.shape(t)}. Pass one number per call."
            )
        number = self.concrete(t)
        if number is not None:
            check(number, where)
        return self.cast(t, dtype)


# --- the public functions, once -----------------------------------------------------

_DOCS: dict[str, str] = {
    "reverse_gradient": (
        "Gradient reversal (Ganin & Lempitsky 2015): ``y = x``, ``dL/dx = -lambd * dL/dy``.\n\n"
        "``lambd`` (λ >= 0) is a number or a 0-d tensor; a number or a concrete tensor is\n"
        "checked (NaN, inf or negative raise :class:`~backflip.BackflipValueError`), a\n"
        "symbolic one (under the framework's compiler) is not, and a new value does not\n"
        "recompile. A second derivative through a reversal picks up ``lambd**2``."
    ),
    "scale_gradient": (
        "Gradient scaling: ``y = x``, ``dL/dx = factor * dL/dy`` (any finite ``factor``)."
    ),
    "clip_gradient": (
        "Gradient clipping: ``y = x``, ``dL/dx = clip(dL/dy, min, max)`` elementwise.\n\n"
        "Either bound may be ``None``, not both; ``min <= max``."
    ),
    "clip_gradient_norm": (
        "Gradient norm clipping: ``y = x``, ``dL/dx = g * min(1, max_norm / ||g||_2)``.\n\n"
        "``g = dL/dy``; the L2 norm is over the whole tensor (per example under ``vmap``);\n"
        "``max_norm`` is finite and > 0."
    ),
    "custom_gradient": (
        "Decorator: ``fn(*args, **kwargs)`` returns ``(y, grad_fn)``; ``grad_fn(dL/dy)``\n"
        "returns ``dL/dx``.\n\n"
        "The contract, the same in every backflip adapter, is in\n"
        "``docs/guides/custom-gradients.md``: ``grad_fn`` returns one gradient per\n"
        "positional argument, tensor or not (``None`` for one that gets none); keyword\n"
        "arguments are constants. ``functools.partial`` and callable objects work."
    ),
    "activation_with_rule": (
        "``y = act(x)``, with ``dL/dx`` by ``rule`` (see :mod:`backflip.rules`).\n\n"
        "``activation``: relu, leaky_relu(negative_slope=0.01), elu(alpha=1.0),\n"
        "gelu(approximate='none' | 'tanh'), silu or softplus(beta=1.0); ``rule``:\n"
        "``\"vanilla\"`` (``g * act'(x)``), ``\"guided\"`` (``g * act'(x) * 1[g > 0]``),\n"
        "``\"deconvnet\"`` (``g * 1[g > 0]``) or ``fn(x, y, g) -> dL/dx``."
    ),
    "guided_relu": (
        "ReLU with the guided-backprop rule (Springenberg et al. 2015):\n"
        "``dL/dx = g * 1[x > 0] * 1[g > 0]``."
    ),
    "deconvnet_relu": (
        "ReLU with the deconvnet rule (Zeiler & Fergus 2014): ``dL/dx = g * 1[g > 0]``\n"
        "(ignores ``x``)."
    ),
}


def export(backend: Backend, module: str, notes: Mapping[str, str]) -> SimpleNamespace:
    """The eight public functions of ``backflip._api.CORE_OPS`` over ``backend``.

    ``notes[name]`` is what the adapter adds to the shared docstring: its framework's
    specifics and a ``>>>`` example, which the adapter's module runs as a doctest
    (``__test__``). Each function's ``__module__`` is ``module``.
    """
    b = backend

    def reverse_gradient(x: Any, lambd: Any = 1.0) -> Any:
        x = b.check_input(x, "reverse_gradient")
        return b.reverse(x, b.param(lambd, b.dtype(x), "lambd", "reverse_gradient"))

    def scale_gradient(x: Any, factor: Any) -> Any:
        x = b.check_input(x, "scale_gradient")
        return b.times(x, b.param(factor, b.dtype(x), "factor", "scale_gradient",
                                  check_factor))

    def clip_gradient(x: Any, min: float | None = None, max: float | None = None) -> Any:
        lo, hi = check_clip_bounds(min, max, "clip_gradient")
        return b.identity_vjp(b.check_input(x, "clip_gradient"), clip_backward, lo, hi)

    def clip_gradient_norm(x: Any, max_norm: float) -> Any:
        max_norm = check_max_norm(max_norm, "clip_gradient_norm")
        x = b.check_input(x, "clip_gradient_norm")
        return b.identity_vjp(x, clip_norm_backward, max_norm)

    def custom_gradient(fn: Callable[..., tuple[Any, Callable[..., Any]]]) -> Callable[..., Any]:
        return b.wrap_custom(fn, check_decoratee(fn))

    def activation_with_rule(x: Any, activation: str = "relu", rule: Any = "guided",
                             **params: Any) -> Any:
        kw = check_params(activation, rules.resolve(
            activation, rule, params, {**rules.get_activation(activation).params,
                                       **EXTRA_PARAMS.get((b.name, activation), {})}))
        x = b.check_input(x, "activation_with_rule")
        return b.activation(x, activation, rule, tuple(sorted(kw.items())))

    def guided_relu(x: Any) -> Any:
        return activation_with_rule(x, "relu", "guided")

    def deconvnet_relu(x: Any) -> Any:
        return activation_with_rule(x, "relu", "deconvnet")

    out = SimpleNamespace()
    types = _signatures(b.tensor_type)
    for fn in (reverse_gradient, scale_gradient, clip_gradient, clip_gradient_norm,
               custom_gradient, activation_with_rule, guided_relu, deconvnet_relu):
        fn.__module__, fn.__qualname__ = module, fn.__name__
        fn.__doc__ = _DOCS[fn.__name__] + "\n\n" + _dedent(notes[fn.__name__])
        fn.__annotations__ = types[fn.__name__]
        setattr(out, fn.__name__, fn)
    assert set(vars(out)) == set(CORE_OPS)
    return out


def _signatures(t: str) -> dict[str, dict[str, str]]:
    """The public functions' annotations, in the framework's tensor type ``t``."""
    grad_fn = f"Callable[..., tuple[{t}, Callable[..., Any]]]"
    rule = f"str | Callable[[{t}, {t}, {t}], {t}]"
    return {
        "reverse_gradient": {"x": t, "lambd": f"float | {t}", "return": t},
        "scale_gradient": {"x": t, "factor": f"float | {t}", "return": t},
        "clip_gradient": {"x": t, "min": "float | None", "max": "float | None", "return": t},
        "clip_gradient_norm": {"x": t, "max_norm": "float", "return": t},
        "custom_gradient": {"fn": grad_fn, "return": f"Callable[..., {t}]"},
        "activation_with_rule": {"x": t, "activation": "str", "rule": rule,
                                 "params": "float | str", "return": t},
        "guided_relu": {"x": t, "return": t},
        "deconvnet_relu": {"x": t, "return": t},
    }


def _dedent(text: str) -> str:
    import inspect

    return inspect.cleandoc(text)
