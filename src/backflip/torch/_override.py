"""Override the backward of every nonlinearity a model calls, provably, or raise.

:func:`override_gradients` wraps the model's ``forward`` (an instance attribute,
removed afterwards) so that, while the model runs, a
:class:`torch.overrides.TorchFunctionMode` sees every PyTorch function call made
inside it: those of ``nn.ReLU`` & co. modules (which call ``F.relu`` etc.) and the
functional calls written directly in ``forward``. Calls outside the model's forward
(the loss, the backward, your own code) are never touched.

Nonlinearities it watches:

* covered (routed to :func:`backflip.torch.activation_with_rule`): ``F.relu``,
  ``torch.relu``, ``Tensor.relu``, ``relu_`` and ``F.relu(inplace=True)``,
  ``F.leaky_relu``, ``F.elu``, ``F.gelu``, ``F.silu``, ``F.softplus`` (hence the
  modules ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.ELU``, ``nn.GELU``, ``nn.SiLU``,
  ``nn.Softplus``, also with ``inplace=True``);
* watched but not covered (``strict=True`` raises, ``strict=False`` keeps the default
  gradient and lists the call site in the report): ``tanh``, ``sigmoid``, ``relu6``,
  ``hardtanh``, ``hardswish``, ``hardsigmoid``, ``mish``, ``selu``, ``celu``,
  ``prelu``, ``rrelu``, ``softsign``, ``logsigmoid``, ``glu``, ``threshold``,
  ``hardshrink``, ``softshrink``, ``tanhshrink``.

Not watched: softmax/log_softmax (a normalisation, not an elementwise
nonlinearity), max pooling, a ReLU spelled ``clamp(x, min=0)``/``maximum``, and code that does not go through torch functions
(C++ kernels such as ``nn.LSTM``'s gates, custom CUDA ops).
"""

from __future__ import annotations

import inspect
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._override_report import OverrideReport, rule_name, strict_error
from backflip._override_verify import Checker
from backflip.rules import check_rule
from backflip.torch._check import GradientCheckError, GradientReport
from backflip.torch._ops import activation_with_rule
from backflip.torch._rules import Rule

__all__ = ["OverrideReport", "override_gradients"]

_T = torch.Tensor
_C_NN = torch._C._nn

# func -> (label, activation, positional parameter names after x, always in place)
_COVERED: dict[Callable, tuple[str, str, tuple[str, ...], bool]] = {}


def _cover(funcs, label, activation, names=(), inplace=False):
    for f in funcs:
        if f is not None:
            _COVERED.setdefault(f, (label, activation, names, inplace))


_cover([F.relu], "F.relu", "relu", ("inplace",))
_cover([torch.relu, _T.relu], "relu", "relu")
_cover([torch.relu_, _T.relu_, getattr(F, "relu_", None)], "relu_", "relu", (), True)
_cover(
    [F.leaky_relu, _C_NN.leaky_relu], "F.leaky_relu", "leaky_relu", ("negative_slope", "inplace")
)
_cover([getattr(F, "leaky_relu_", None), _C_NN.leaky_relu_], "leaky_relu_", "leaky_relu",
       ("negative_slope",), True)  # fmt: skip
_cover([F.elu, _C_NN.elu], "F.elu", "elu", ("alpha", "inplace"))
_cover([getattr(F, "elu_", None), _C_NN.elu_], "elu_", "elu", ("alpha",), True)
_cover([F.gelu], "F.gelu", "gelu", ("approximate",))
_cover([F.silu, _C_NN.silu], "F.silu", "silu", ("inplace",))
_cover([F.softplus], "F.softplus", "softplus", ("beta", "threshold"))

_UNCOVERED_NAMES = (
    "tanh sigmoid relu6 hardtanh hardswish hardsigmoid mish selu celu prelu rrelu softsign "
    "logsigmoid glu threshold hardshrink softshrink tanhshrink"
).split()
_UNCOVERED: dict[Callable, str] = {}
for _name in _UNCOVERED_NAMES:
    for _ns, _prefix in ((F, "F."), (torch, "torch."), (_T, "Tensor."), (_C_NN, "F.")):
        for _suffix in ("", "_"):
            _f = getattr(_ns, _name + _suffix, None)
            if callable(_f):
                _UNCOVERED.setdefault(_f, f"{_prefix}{_name}{_suffix}")
for _f in list(_UNCOVERED):
    _UNCOVERED.pop(_f) if _f in _COVERED else None

_TORCH_DIR = os.path.dirname(torch.__file__)
_ACTIVE: weakref.WeakSet = weakref.WeakSet()  # models inside an override_gradients block
_THIS_FILE = __file__


def _gradient(x, activation: str, rule: Rule, params: dict, g):
    """``dL/dx`` of ``activation_with_rule`` at ``x`` for cotangent ``g`` (NumPy, float64)."""
    xt = torch.as_tensor(x).requires_grad_(True)
    y = activation_with_rule(xt, activation, rule, **params)
    (dx,) = torch.autograd.grad(y, xt, torch.as_tensor(g))
    return dx.numpy()


def _check_error(message: str, max_abs_error: float) -> GradientCheckError:
    """``verify()`` raises a GradientCheckError (an OverrideCheckError), as it always has."""
    return GradientCheckError(GradientReport(False, max_abs_error, None, "expected", message))


_CHECKER = Checker(
    "PyTorch", _gradient, "float64", tensor=torch.as_tensor,
    numpy=lambda t: t.detach().cpu().numpy(), error=_check_error,
)  # fmt: skip


def _call_site(modules: dict[int, str], label: str) -> str:
    """Name the module or ``file:line`` that made the current call."""
    frame = sys._getframe(2)
    user = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if user is None and not filename.startswith(_TORCH_DIR) and filename != _THIS_FILE:
            user = frame
        code = frame.f_code
        owner = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
        if owner is not None and id(owner) in modules:
            name = modules[id(owner)] or "<model>"
            if filename.startswith(_TORCH_DIR):
                return f"module {name!r} ({type(owner).__name__})"
            where = f"{os.path.basename(filename)}:{frame.f_lineno}"
            return f"{label} in {type(owner).__name__}.forward of {name!r} at {where}"
        frame = frame.f_back
    if user is not None:
        return f"{label} at {os.path.basename(user.f_code.co_filename)}:{user.f_lineno}"
    return label  # pragma: no cover


def _bind(func, names, args, kwargs) -> tuple[torch.Tensor, dict]:
    x, *rest = args
    params = dict(zip(names, rest, strict=False))
    params.update(kwargs or {})
    return x, params


def _apply(x: torch.Tensor, activation: str, rule: Rule, params: dict, inplace: bool):
    if not inplace:
        return activation_with_rule(x, activation, rule, **params)
    # the rule's backward may need the original input (all but ReLU's built-in rules save
    # it): compute from a copy then, and write the result back as the in-place op would
    src = x if activation == "relu" and isinstance(rule, str) else x.clone()
    x.copy_(activation_with_rule(src, activation, rule, **params))
    return x


class _OverrideMode(TorchFunctionMode):
    def __init__(self, state: _State):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        st = self.state
        hit = _COVERED.get(func)
        if hit is not None:
            label, activation, names, always_inplace = hit
            x, params = _bind(func, names, args, kwargs)
            inplace = bool(params.pop("inplace", False)) or always_inplace
            st.report.seen += 1
            if torch.compiler.is_compiling():
                raise BackflipValueError(_COMPILE_MSG)
            site = _call_site(st.modules, label)
            with torch._C.DisableTorchFunction():  # an enclosing override must not see it
                out = _apply(x, activation, st.rule, params, inplace)
            st.report._record(site, activation, params)
            return out
        label = _UNCOVERED.get(func)
        if label is not None:
            st.report.seen += 1
            site = _call_site(st.modules, label)
            if st.strict:
                raise strict_error(st.rule_name, site, label)
            st.report.not_overridden.append(site)
        return func(*args, **(kwargs or {}))


_COMPILE_MSG = (
    "override_gradients cannot override nonlinearities traced by torch.compile: the "
    "compiled graph would keep the default gradients. Run the model eagerly inside the "
    "block, or compile a function that calls backflip.torch.activation_with_rule itself."
)


@dataclass
class _State:
    report: OverrideReport
    rule: Rule
    rule_name: str
    strict: bool
    modules: dict[int, str]


@contextmanager
def override_gradients(
    model: nn.Module, rule: Rule, strict: bool = True
) -> Iterator[OverrideReport]:
    """Change the backward of every nonlinearity ``model`` calls while the block runs.

    Forward values are unchanged; the backward of each covered nonlinearity follows
    ``rule`` (``"vanilla"``, ``"guided"``, ``"deconvnet"`` or ``fn(x, y, g)``; the
    maths is in :mod:`backflip.rules`). The yielded :class:`OverrideReport` counts
    the calls seen and overridden; with ``strict=True`` a watched nonlinearity no
    rule covers raises :class:`~backflip.BackflipValueError` naming the module or
    ``file:line``. Everything is restored when the block exits, also on error:
    module identity, flags such as ``inplace`` and ``forward`` are untouched.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> with override_gradients(net, "guided") as report:
    ...     net(x).sum().backward()
    >>> (report.seen, report.overridden)
    (1, 1)
    """
    if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        model = model._orig_mod  # its recompiled forward runs the override eagerly
    if not isinstance(model, nn.Module):
        raise BackflipTypeError(
            f"override_gradients expects a torch.nn.Module; got {type(model).__name__}. "
            "For a plain function, call backflip.torch.activation_with_rule in it."
        )
    check_rule(rule)
    if model in _ACTIVE:
        raise BackflipValueError(
            f"override_gradients is already active on this {type(model).__name__}; one rule "
            "per model at a time: leave the outer block first."
        )
    report = OverrideReport(rule=rule_name(rule), _rule=rule, _checks=(_CHECKER,))
    state = _State(report, rule, report.rule, strict, {})
    had_own_forward = "forward" in model.__dict__
    own_forward = model.__dict__.get("forward")
    inner = model.forward

    def forward(*args, **kwargs):
        state.modules = {id(m): name for name, m in model.named_modules()}
        report.forwards += 1
        with _OverrideMode(state):
            return inner(*args, **kwargs)

    forward.__signature__ = inspect.signature(inner)  # type: ignore[attr-defined]
    forward._backflip_override = True  # type: ignore[attr-defined]
    # torch.compile must not trace the mode: the overridden forward always runs eagerly
    model.forward = torch.compiler.disable(forward)
    _ACTIVE.add(model)
    try:
        yield report
    finally:
        _ACTIVE.discard(model)
        if had_own_forward:
            model.forward = own_forward
        else:
            del model.forward
