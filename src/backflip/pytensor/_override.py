"""Override the backward of every nonlinearity in an existing PyTensor graph, or raise.

:func:`override_gradients` takes the outputs of a graph that is already built (a
Lasagne-style model written with plain PyTensor ops) and returns a copy in which
each recognised nonlinearity node is replaced by
:func:`backflip.pytensor.activation_with_rule` on the same input; every other node
is kept (re-made only where one of its inputs changed). ``pytensor.grad``,
``pytensor.gradient.jacobian`` and ``pytensor.function`` of the new outputs then
follow the rule. Only nodes the new outputs still depend on are counted, so the
sigmoid inside a recognised SiLU is not reported on its own.

Recognised and covered (PyTensor has no ReLU op: these are the spellings in use):

* ReLU: ``pt.maximum(x, 0)`` or ``pt.maximum(0, x)`` (also with ``pt.zeros_like(x)``),
  ``pt.switch(x > 0, x, 0)``, and Theano's / Lasagne's ``rectify``,
  ``0.5 * (x + abs(x))``;
* leaky ReLU: ``pt.switch(x > 0, x, a * x)`` and Theano's ``relu(x, alpha)``,
  ``f1 * x + f2 * abs(x)`` with ``f1 + f2 == 1`` (then ``a = f1 - f2``);
* ELU: ``pt.switch(x > 0, x, pt.expm1(x))`` (Lasagne's ``elu``) and
  ``pt.switch(x > 0, x, alpha * pt.expm1(x))``;
* ``pt.softplus(x)`` and SiLU ``x * pt.sigmoid(x)``.

Constants (``0``, ``a``, ``alpha``, ``f1``, ``f2``) must be constants of the graph,
also broadcast ones; operands may come in either order.

Watched but not covered (``strict=True`` raises, ``strict=False`` keeps the default
gradient and lists the node in ``report.not_overridden``): ``pt.tanh``,
``pt.sigmoid``, a leaky ReLU or ELU whose slope is symbolic (a shared variable), and
any watched nonlinearity inside a ``Scan`` or an ``OpFromGraph`` (their inner graphs
are not rewritten; backflip's own ops are skipped).

Not recognised: a hand-written GELU, ``pt.clip``, softmax (a normalisation), and
nodes already made by ``activation_with_rule`` (they keep their rule). A graph that
contains none of the above gets ``report.seen == 0`` and ``complete == False``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.scalar as ps
import pytensor.scalar.math as psm
import pytensor.tensor as pt
from pytensor.gradient import grad
from pytensor.graph.basic import Variable
from pytensor.graph.traversal import io_toposort
from pytensor.tensor.basic import get_underlying_scalar_constant_value
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.exceptions import NotScalarConstantError

from backflip._errors import BackflipTypeError
from backflip._override_report import OverrideReport, rule_name, strict_error
from backflip._override_verify import Checker
from backflip.pytensor._ops import activation_with_rule
from backflip.rules import check_rule, get_activation

__all__ = ["OverrideReport", "override_gradients"]

Rule = str | Callable[[Any, Any, Any], Any]


# ------------------------------------------------------------------ recognising nodes


@dataclass(frozen=True)
class _Hit:
    """A watched nonlinearity node; ``activation`` is None when no rule covers it."""

    label: str
    x: Variable | None = None
    activation: str | None = None
    params: tuple = ()


def _scalar_op(var: Variable | None, *classes: type) -> Any:
    """``var``'s owner if it is an Elemwise of one of ``classes``, else None."""
    node = getattr(var, "owner", None)
    if node is not None and isinstance(node.op, Elemwise):
        if isinstance(node.op.scalar_op, classes):
            return node
    return None


def _constant(var: Variable) -> float | None:
    try:
        return float(get_underlying_scalar_constant_value(var))
    except NotScalarConstantError:
        return None


def _other(pair: Sequence[Variable], x: Variable) -> Variable | None:
    a, b = pair
    return b if a is x else a if b is x else None


def _relu_mask_input(cond: Variable) -> Variable | None:
    """``x`` when ``cond`` is ``x > 0`` (or ``0 < x``), else None."""
    node = _scalar_op(cond, ps.GT)
    if node is not None and _constant(node.inputs[1]) == 0:
        return node.inputs[0]
    node = _scalar_op(cond, ps.LT)
    if node is not None and _constant(node.inputs[0]) == 0:
        return node.inputs[1]
    return None


def _times_constant(var: Variable, x: Variable) -> tuple[bool, float | None] | None:
    """For ``var == c * x`` (either order): (True, c), c None when not constant."""
    node = _scalar_op(var, ps.Mul)
    if node is None or len(node.inputs) != 2:
        return None
    c = _other(node.inputs, x)
    return None if c is None else (True, _constant(c))


def _switch(node: Any) -> _Hit | None:
    cond, x, other = node.inputs
    if _relu_mask_input(cond) is not x:
        return None
    if _constant(other) == 0:
        return _Hit("switch(x > 0, x, 0)", x, "relu")
    scaled = _times_constant(other, x)
    if scaled is not None:
        if scaled[1] is None:
            return _Hit("leaky ReLU switch(x > 0, x, a * x) with a symbolic a")
        return _Hit("switch(x > 0, x, a * x)", x, "leaky_relu", (("negative_slope", scaled[1]),))
    alpha, expm1 = 1.0, _scalar_op(other, ps.Expm1)
    if expm1 is None:
        mul = _scalar_op(other, ps.Mul)
        if mul is None or len(mul.inputs) != 2:
            return None
        for a, b in (mul.inputs, mul.inputs[::-1]):
            if _scalar_op(b, ps.Expm1) is not None:
                alpha, expm1 = _constant(a), b.owner
                break
        if expm1 is None:
            return None
    if expm1.inputs[0] is not x:
        return None
    if alpha is None:
        return _Hit("ELU switch(x > 0, x, alpha * expm1(x)) with a symbolic alpha")
    return _Hit("switch(x > 0, x, alpha * expm1(x))", x, "elu", (("alpha", alpha),))


def _abs_of(var: Variable) -> Variable | None:
    node = _scalar_op(var, ps.Abs)
    return None if node is None else node.inputs[0]


def _theano_relu(node: Any) -> _Hit | None:
    """``0.5 * (x + abs(x))`` (Theano's ``relu(x)``)."""
    if len(node.inputs) != 2:
        return None
    for half, total in (node.inputs, node.inputs[::-1]):
        add = _scalar_op(total, ps.Add)
        if _constant(half) != 0.5 or add is None or len(add.inputs) != 2:
            continue
        for x, ab in (add.inputs, add.inputs[::-1]):
            if _abs_of(ab) is x:
                return _Hit("0.5 * (x + abs(x))", x, "relu")
    return None


def _theano_leaky(node: Any) -> _Hit | None:
    """``f1 * x + f2 * abs(x)`` with ``f1 + f2 == 1`` (Theano's ``relu(x, alpha)``)."""
    if len(node.inputs) != 2:
        return None
    for lin, ab in (node.inputs, node.inputs[::-1]):
        m1, m2 = _scalar_op(lin, ps.Mul), _scalar_op(ab, ps.Mul)
        if m1 is None or m2 is None or len(m1.inputs) != 2 or len(m2.inputs) != 2:
            continue
        for f2, a in (m2.inputs, m2.inputs[::-1]):
            x = _abs_of(a)
            f1 = None if x is None else _other(m1.inputs, x)
            if f1 is None:
                continue
            c1, c2 = _constant(f1), _constant(f2)
            if c1 is None or c2 is None or not math.isclose(c1 + c2, 1.0, abs_tol=1e-6):
                return None
            if c1 == c2:
                return _Hit("0.5 * x + 0.5 * abs(x)", x, "relu")
            return _Hit("f1 * x + f2 * abs(x)", x, "leaky_relu", (("negative_slope", c1 - c2),))
    return None


def _silu(node: Any) -> _Hit | None:
    if len(node.inputs) != 2:
        return None
    for x, s in (node.inputs, node.inputs[::-1]):
        sig = _scalar_op(s, psm.Sigmoid)
        if sig is not None and sig.inputs[0] is x:
            return _Hit("x * pt.sigmoid(x)", x, "silu")
    return None


def _classify(node: Any) -> _Hit | None:
    """The watched nonlinearity ``node`` computes, or None."""
    if not isinstance(node.op, Elemwise) or len(node.outputs) != 1:
        return None
    out, op = node.outputs[0], node.op.scalar_op
    if not out.dtype.startswith("float"):
        return None
    hit = None
    if isinstance(op, ps.Maximum) and len(node.inputs) == 2:
        for x, zero in (node.inputs, node.inputs[::-1]):
            if _constant(x) is None and _constant(zero) == 0:
                hit = _Hit("pt.maximum(x, 0)", x, "relu")
                break
    elif isinstance(op, ps.Switch):
        hit = _switch(node)
    elif isinstance(op, ps.Mul):
        hit = _theano_relu(node) or _silu(node)
    elif isinstance(op, ps.Add):
        hit = _theano_leaky(node)
    elif isinstance(op, psm.Softplus):
        hit = _Hit("pt.softplus", node.inputs[0], "softplus", (("beta", 1.0),))
    elif isinstance(op, psm.Sigmoid):
        hit = _Hit("pt.sigmoid")
    elif isinstance(op, ps.Tanh):
        hit = _Hit("pt.tanh")
    if hit is not None and hit.x is not None:
        if not hit.x.dtype.startswith("float") or hit.x.type.broadcastable != out.broadcastable:
            return None  # an integer input, or one the zero broadcasts up: not elementwise
    return hit


def _inner_outputs(node: Any) -> list[Variable] | None:
    """The inner graph of a Scan or OpFromGraph that is not backflip's own."""
    op = node.op
    if str(getattr(op, "name", "") or "").startswith("backflip_"):
        return None
    fgraph = getattr(op, "fgraph", None)
    return None if fgraph is None else list(fgraph.outputs)


def _site(var: Variable, label: str) -> str:
    """``label 'name' at file:line`` from the variable's creation trace."""
    name = f" {var.name!r}" if var.name else ""
    trace = getattr(var.tag, "trace", None)
    if trace and trace[-1]:
        file, line = trace[-1][-1][:2]
        return f"{label}{name} at {os.path.basename(file)}:{line}"
    return f"{label}{name}"


# --------------------------------------------------------------------------- rewrite


def _live(outputs: list[Variable]) -> tuple[list, dict]:
    """Nodes the rewritten outputs depend on, in topological order, and their hits."""
    hits: dict = {}
    live: set = set()
    stack = [v.owner for v in outputs if v.owner is not None]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        hit = hits.setdefault(node, _classify(node))
        # a covered node now depends on its input only; anything else on all inputs
        parents = [hit.x] if hit is not None and hit.x is not None else node.inputs
        stack.extend(p.owner for p in parents if p.owner is not None and p.owner not in live)
    order = [n for n in io_toposort([], outputs) if n in live]
    return order, hits


class _Rewriter:
    def __init__(self, report: OverrideReport, rule: Rule, strict: bool):
        self.report, self.rule, self.strict = report, rule, strict

    def _uncovered(self, site: str, label: str) -> None:
        if self.strict:
            raise strict_error(self.report.rule, site, label)
        self.report.seen += 1
        self.report.not_overridden.append(site)

    def rewrite(self, outputs: list[Variable]) -> list[Variable]:
        order, hits = _live(outputs)
        memo: dict[Variable, Variable] = {}
        for node in order:
            hit, out = hits[node], node.outputs
            if hit is not None and hit.activation is not None:
                site = _site(out[0], hit.label)
                params = {**get_activation(hit.activation).params, **dict(hit.params)}
                new = activation_with_rule(
                    memo.get(hit.x, hit.x), hit.activation, self.rule, **params
                )
                memo[out[0]] = out[0].type.filter_variable(pt.cast(new, out[0].dtype))
                self.report.seen += 1
                self.report._record(site, hit.activation, params)
                continue
            if hit is not None:
                self._uncovered(_site(out[0], hit.label), hit.label)
            inner = _inner_outputs(node)
            if inner is not None:
                self._probe(inner, f"{type(node.op).__name__} {_site(out[0], '').strip()}")
            inputs = [memo.get(v, v) for v in node.inputs]
            if any(a is not b for a, b in zip(inputs, node.inputs, strict=True)):
                clone = node.clone_with_new_inputs(inputs, strict=False)
                memo.update(zip(out, clone.outputs, strict=True))
        return [memo.get(v, v) for v in outputs]

    def _probe(self, outputs: list[Variable], where: str) -> None:
        """Report the watched nonlinearities of an inner graph that is kept as it is."""
        order, hits = _live(outputs)
        for node in order:
            hit = hits[node]
            if hit is not None:
                label = f"{hit.label} inside the {where} (inner graphs are not rewritten)"
                self._uncovered(_site(node.outputs[0], label), label)
            inner = _inner_outputs(node)
            if inner is not None:
                self._probe(inner, where)


# ---------------------------------------------------------------------------- verify


def _gradient(x: np.ndarray, activation: str, rule: Rule, params: dict, g: np.ndarray):
    """``dL/dx`` of ``activation_with_rule`` at ``x`` for cotangent ``g`` (NumPy, float64;
    compiled with FAST_COMPILE)."""
    xs, gs = pt.dvector("x"), pt.dvector("g")
    dx = grad(None, wrt=xs, known_grads={activation_with_rule(xs, activation, rule, **params): gs})
    return pytensor.function([xs, gs], dx, mode="FAST_COMPILE", on_unused_input="ignore")(x, g)


def _evaluate(var: Variable) -> np.ndarray:
    return pytensor.function([], var, mode="FAST_COMPILE")()


_CHECKER = Checker("PyTensor", _gradient, "float64", tensor=pt.constant, numpy=_evaluate)


# -------------------------------------------------------------------------------- API


def override_gradients(
    outputs: Variable | Sequence[Variable], rule: Rule, strict: bool = True
) -> tuple[Variable | list[Variable], OverrideReport]:
    """A copy of the graph of ``outputs`` whose nonlinearities' backward follows ``rule``.

    Forward values are unchanged; the backward of each recognised nonlinearity node
    (the module docstring lists the spellings) follows ``rule``: ``"vanilla"``,
    ``"guided"``, ``"deconvnet"`` or ``fn(x, y, g) -> dL/dx`` built from PyTensor ops
    (the maths is in :mod:`backflip.rules`). The original graph is not modified.
    Returns ``(new_outputs, report)``, ``new_outputs`` a variable or a list like
    ``outputs``; with ``strict=True`` a watched nonlinearity no rule covers raises
    :class:`~backflip.BackflipValueError` naming the node and the line that built it.
    The report counts each node once (``forwards`` is 1: one rewrite).

    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> y = (pt.maximum(x * 2.0, 0) * np.array([1.0, -1.0])).sum()
    >>> (guided,), report = override_gradients([y], "guided")
    >>> pytensor.function([x], pt.grad(guided, x), mode="FAST_COMPILE")(np.ones(2))
    array([2., 0.])
    >>> (report.seen, report.overridden, report.complete)
    (1, 1, True)
    """
    single = isinstance(outputs, Variable)
    outs = [outputs] if single else list(outputs)
    bad = [type(v).__name__ for v in outs if not isinstance(v, Variable)]
    if bad or not outs:
        raise BackflipTypeError(
            "override_gradients expects a PyTensor variable or a list of them (the "
            f"model's outputs); got {type(outputs).__name__}"
            f"{' of ' + ', '.join(sorted(set(bad))) if bad and not single else ''}. Build "
            "the graph first, e.g. y = model(pt.matrix('x')), and pass y."
        )
    check_rule(rule)
    if not isinstance(strict, bool):
        raise BackflipTypeError(f"`strict` must be True or False; got {strict!r}.")
    report = OverrideReport(rule=rule_name(rule), _rule=rule, _checks=(_CHECKER,))
    new = _Rewriter(report, rule, strict).rewrite(outs)
    report.forwards = 1
    return (new[0] if single else new), report
