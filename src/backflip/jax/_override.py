"""Override the backward of every nonlinearity a JAX function calls, provably, or raise.

:func:`override_gradients` is a function transform. Each call of the new function
traces ``fn`` to a jaxpr (``jax.make_jaxpr``) and evaluates that jaxpr again with an
interpreter that replaces each recognised nonlinearity by
:func:`backflip.jax.activation_with_rule` on the same input. Everything else is
re-bound unchanged, so the result composes with ``jit``, ``grad``, ``vmap`` (in any
order) and works on any model written as a function of a params pytree (Flax's
``model.apply``, an Equinox module's ``__call__``, a hand-written MLP).

Recognised and covered (the forward is the same, bit for bit on CPU):

* ``jax.nn.relu`` (a ``custom_jvp`` call), ``jax.nn.silu``/``swish``,
  ``jax.nn.softplus``, ``jax.nn.elu`` and ``jax.nn.leaky_relu`` (``jit`` calls):
  identified by the source of their sub-jaxpr, ``jax/_src/nn/functions.py``, so a
  user function that merely shares the name is not mistaken for them. ``alpha`` and
  ``negative_slope`` must be constants at trace time (a Python number);
* ``jax.nn.gelu`` with ``approximate=True`` (the default) or ``False``: it is not a
  ``jit`` call (JAX inlines it), so its primitives are matched against the jaxpr
  ``jax.nn.gelu`` itself emits for the same input type;
* ``jnp.maximum(x, 0)``, ``jnp.maximum(0, x)``, ``lax.max``, and a maximum with
  ``jnp.zeros_like(x)``: a ``max`` whose other operand is a literal 0 or a broadcast
  of one. It becomes ``jax.nn.relu``, whose derivative at exactly 0 is 0 (``max``
  alone gives 0.5 there).

Watched but not covered (``strict=True`` raises, ``strict=False`` keeps the default
gradient and lists the call site in ``report.not_overridden``): the ``tanh`` and
``logistic`` (``jax.nn.sigmoid``) primitives and ``jax.nn.relu6``, ``hard_tanh``,
``celu``, ``selu``, ``mish``, ``log_sigmoid``, ``soft_sign``, ``hard_sigmoid``,
``hard_silu``/``hard_swish``, ``sparse_plus``, ``sparse_sigmoid``, ``squareplus``,
``glu`` (each as a whole: the ELU inside ``selu`` is not overridden alone), an
``elu``/``leaky_relu`` whose parameter is traced, and any watched nonlinearity inside
a ``custom_jvp``/``custom_vjp`` function (its own derivative rule is kept) or inside
a higher-order primitive other than ``jit``, ``scan``/``fori_loop``, ``cond``/
``switch``, ``while_loop`` and ``checkpoint``/``remat`` (which are rewritten).

Not recognised: ``jnp.clip(x, 0)``, ``jnp.where(x > 0, x, 0)``, a hand-written GELU
or SiLU, softmax/log_softmax (normalisations, not elementwise nonlinearities), and
``backflip.jax.activation_with_rule`` calls already in ``fn`` (they keep their own
rule; an inner ``override_gradients`` therefore wins over an outer one).

Counting happens at trace time: every call of the new function traces ``fn`` once
and adds to the report (``forwards`` counts those traces). Under ``jax.jit`` that
is once per compilation, not once per step; the body of a ``scan`` is counted once,
not once per iteration.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
from jax import lax

from backflip._errors import BackflipTypeError
from backflip._override_report import OverrideReport, rule_name, strict_error
from backflip._override_verify import Checker
from backflip.jax import _rules
from backflip.jax._ops import activation_with_rule
from backflip.rules import check_rule, get_activation

__all__ = ["OverrideReport", "override_gradients"]

Rule = str | Callable[[Any, Any, Any], Any]

_NN_FILE = os.path.normcase(sys.modules[jax.nn.silu.__module__].__file__)
_RULES_FILE = os.path.normcase(_rules.__file__.removesuffix("c"))
_THIS_FILE = os.path.normcase(__file__.removesuffix("c"))
_OWN_FILES = (_THIS_FILE, _RULES_FILE)

# jax.nn function -> (activation, name of its one parameter after x, or None)
_COVERED_NN = {
    "relu": ("relu", None),
    "silu": ("silu", None),
    "softplus": ("softplus", None),
    "elu": ("elu", "alpha"),
    "leaky_relu": ("leaky_relu", "negative_slope"),
}
_UNCOVERED_NN = frozenset(
    "relu6 hard_tanh celu selu mish log_sigmoid soft_sign hard_sigmoid hard_silu "
    "sparse_plus sparse_sigmoid squareplus glu".split()
)
_UNCOVERED_PRIMS = {"tanh": "tanh", "logistic": "logistic (jax.nn.sigmoid)"}
_ZERO_PRESERVING = frozenset({"broadcast_in_dim", "convert_element_type", "reshape", "copy"})


# ----------------------------------------------------------------------------- rules


def _with_rule(x: jax.Array, activation: str, rule: Rule, params: dict) -> jax.Array:
    """What a recognised call becomes: the same forward, ``rule``'s backward."""
    if activation == "gelu":  # jax.nn.gelu's approximate is a bool
        return activation_with_rule(x, "gelu", rule,
                                    approximate="tanh" if params["approximate"] else "none")
    return activation_with_rule(x, activation, rule, **params)


def _gradient(x: np.ndarray, activation: str, rule: Rule, params: dict, g: np.ndarray):
    """``dL/dx`` of what a recognised call becomes, at ``x`` for cotangent ``g`` (NumPy)."""
    _, pull = jax.vjp(lambda v: _with_rule(v, activation, rule, params), jnp.asarray(x))
    return np.asarray(pull(jnp.asarray(g))[0])


_CHECKER = Checker("JAX", _gradient, tensor=jnp.asarray)


# ------------------------------------------------------------------ recognising calls


@dataclass(frozen=True)
class _Hit:
    """A watched nonlinearity: ``activation`` is None when no rule covers it."""

    label: str
    activation: str | None = None
    param: str | None = None  # the parameter passed as the call's second operand
    x_index: int = 0  # which operand is the activation's input


def _origin(jaxpr: Any) -> tuple[str, str] | None:
    """(function name, normalised file) a sub-jaxpr was traced from, if recorded."""
    info = getattr(getattr(jaxpr, "jaxpr", jaxpr), "debug_info", None)
    src = getattr(info, "func_src_info", None)
    if not src or " at " not in src:
        return None
    name, _, where = src.partition(" at ")
    return name, os.path.normcase(where.rpartition(":")[0])


def _is_zero(atom: Any, zeros: set) -> bool:
    if isinstance(atom, jcore.Literal):
        value = np.asarray(atom.val)
        return value.size == 1 and value.item() == 0
    return atom in zeros


def _keeps_zero(eqn: Any, zeros: set) -> bool:
    """``eqn`` broadcasts, casts or reshapes a zero constant (``jnp.zeros_like``)."""
    return (
        eqn.primitive.name in _ZERO_PRESERVING
        and bool(eqn.invars)
        and _is_zero(eqn.invars[0], zeros)
    )


def _is_float(atom: Any) -> bool:
    return jnp.issubdtype(atom.aval.dtype, jnp.floating)


def _classify(eqn: Any, zeros: set) -> _Hit | None:
    """The watched nonlinearity ``eqn`` is, or None."""
    name = eqn.primitive.name
    if name in ("custom_jvp_call", "jit"):
        origin = _origin(eqn.params.get("call_jaxpr" if name == "custom_jvp_call" else "jaxpr"))
        if origin is None or origin[1] != _NN_FILE or not eqn.invars:
            return None
        fn_name = origin[0]
        if fn_name in _COVERED_NN and _is_float(eqn.invars[0]):
            activation, param = _COVERED_NN[fn_name]
            if len(eqn.invars) == 1:  # jax.nn's default parameter is baked in
                return _Hit(f"jax.nn.{fn_name}", activation)
            if param is not None and len(eqn.invars) == 2:
                return _Hit(f"jax.nn.{fn_name}", activation, param)
        if fn_name in _UNCOVERED_NN:
            return _Hit(f"jax.nn.{fn_name}")
        return None
    if name in _UNCOVERED_PRIMS:
        return _Hit(_UNCOVERED_PRIMS[name])
    if name == "max" and len(eqn.invars) == 2:
        a, b = eqn.invars
        for index, (x, other) in enumerate(((a, b), (b, a))):
            if (
                not isinstance(x, jcore.Literal)
                and _is_float(x)
                and _is_zero(other, zeros)
                and x.aval.shape == eqn.outvars[0].aval.shape
            ):
                return _Hit("jnp.maximum(x, 0)", "relu", x_index=index)
    return None


def _gelu_reference(approximate: bool, shape: tuple, dtype: Any, weak: bool) -> Any:
    return _gelu_jaxpr(approximate, shape, dtype, weak, jax.config.jax_enable_x64)


@functools.lru_cache(maxsize=64)
def _gelu_jaxpr(approximate: bool, shape: tuple, dtype: Any, weak: bool, x64: bool) -> Any:
    aval = jax.ShapeDtypeStruct(shape, dtype, weak_type=weak)
    return jax.make_jaxpr(functools.partial(jax.nn.gelu, approximate=approximate))(aval).jaxpr


def _same_literal(a: Any, b: Any) -> bool:
    return (
        isinstance(a, jcore.Literal)
        and isinstance(b, jcore.Literal)
        and a.aval == b.aval
        and np.array_equal(np.asarray(a.val), np.asarray(b.val))
    )


def _match_gelu(eqns: list, i: int, uses: Callable[[], Counter]) -> tuple[Any, Any, int, bool]:
    """If ``eqns[i:]`` starts with the primitives ``jax.nn.gelu`` emits, return
    (input var, output var, number of eqns, approximate); else None."""
    first = eqns[i]
    if first.primitive.name not in ("integer_pow", "mul"):
        return None
    xs = [v for v in first.invars if not isinstance(v, jcore.Literal)]
    if len(xs) != 1 or not _is_float(xs[0]):
        return None
    x = xs[0]
    aval = x.aval
    for approximate in (True, False):
        ref = _gelu_reference(approximate, aval.shape, aval.dtype, aval.weak_type)
        n = len(ref.eqns)
        if i + n > len(eqns) or ref.eqns[0].primitive is not first.primitive:
            continue
        env = {ref.invars[0]: x}
        for r, e in zip(ref.eqns, eqns[i : i + n], strict=True):
            if r.primitive is not e.primitive or r.params != e.params:
                break
            if len(r.invars) != len(e.invars) or not all(
                _same_literal(ra, ea) if isinstance(ra, jcore.Literal) else env.get(ra) is ea
                for ra, ea in zip(r.invars, e.invars, strict=True)
            ):
                break
            env.update(zip(r.outvars, e.outvars, strict=True))
        else:
            out = env[ref.outvars[0]]
            inner = {v for e in eqns[i : i + n] for v in e.outvars} - {out}
            counts = uses()
            inside = Counter(
                v
                for e in eqns[i : i + n]
                for v in e.invars
                if not isinstance(v, jcore.Literal) and v in inner
            )
            if all(counts[v] == inside[v] for v in inner):  # intermediates used only here
                return x, out, n, approximate
    return None


def _uses(jaxpr: Any) -> Counter:
    counts = Counter(v for e in jaxpr.eqns for v in e.invars if not isinstance(v, jcore.Literal))
    counts.update(v for v in jaxpr.outvars if not isinstance(v, jcore.Literal))
    return counts


def _user_frame(eqn: Any) -> Any:
    """The innermost frame of the user's code that made ``eqn``, if recorded."""
    try:
        from jax._src import source_info_util

        frames = source_info_util.user_frames(eqn.source_info.traceback)
        return next((f for f in frames if os.path.normcase(f.file_name) not in _OWN_FILES), None)
    except Exception:  # pragma: no cover - a JAX without source info
        return None


def _site(eqn: Any, label: str, outer: Any = None) -> str:
    """``label at file:line``; the line of the enclosing call (``lax.cond(p, jax.nn.relu,
    ...)``) when JAX itself called the nonlinearity."""
    frame = _user_frame(eqn) or outer
    if frame is None:
        return label
    return f"{label} at {os.path.basename(frame.file_name)}:{frame.start_line}"


@contextlib.contextmanager
def _eqn_context(eqn: Any) -> Iterator[None]:
    """Re-bind under the eqn's own source info and name stack, as jax.core.eval_jaxpr
    does, so errors, profiles and ``jax.named_scope`` names still point at the model."""
    try:
        from jax._src import source_info_util as siu

        names = siu.current_name_stack() + eqn.source_info.name_stack
        info = siu.user_context(eqn.source_info.traceback, name_stack=names)
    except Exception:  # pragma: no cover - a JAX without these internals
        info = contextlib.nullcontext()
    manager = getattr(getattr(eqn, "ctx", None), "manager", contextlib.nullcontext())
    with info, manager:
        yield


# ----------------------------------------------------------------------- interpreter


class _Interpreter:
    """Evaluates a jaxpr, routing recognised nonlinearities to the rule."""

    def __init__(self, report: OverrideReport, rule: Rule, strict: bool):
        self.report, self.rule, self.strict = report, rule, strict
        self.counting = True
        self.outer = None  # the user's frame of the higher-order call being evaluated

    # -- bookkeeping

    def _overridden(self, site: str, activation: str, params: dict) -> None:
        if self.counting:
            self.report.seen += 1
            self.report._record(site, activation, params)

    def _uncovered(self, site: str, label: str) -> None:
        if self.strict:
            raise strict_error(self.report.rule, site, label)
        if self.counting:
            self.report.seen += 1
            self.report.not_overridden.append(site)

    def _site(self, eqn: Any, label: str) -> str:
        return _site(eqn, label, self.outer)

    # -- evaluation

    def eval(self, jaxpr: Any, consts: list, args: list) -> list:
        env: dict = {}
        zeros: set = set()

        def read(v):
            return v.val if isinstance(v, jcore.Literal) else env[v]

        env.update(zip(jaxpr.constvars, consts, strict=True))
        env.update(zip(jaxpr.invars, args, strict=True))
        uses = functools.cache(lambda: _uses(jaxpr))
        eqns, i = jaxpr.eqns, 0
        while i < len(eqns):
            eqn = eqns[i]
            gelu = _match_gelu(eqns, i, uses)
            if gelu is not None:
                x, out, n, approximate = gelu
                params = {"approximate": approximate}
                self._overridden(self._site(eqn, "jax.nn.gelu"), "gelu", params)
                with _eqn_context(eqn):
                    env[out] = _with_rule(read(x), "gelu", self.rule, params)
                i += n
                continue
            outs = self._eqn(eqn, [read(v) for v in eqn.invars], zeros)
            if _keeps_zero(eqn, zeros):
                zeros.add(eqn.outvars[0])
            env.update(zip(eqn.outvars, outs, strict=True))
            i += 1
        return [read(v) for v in jaxpr.outvars]

    def _eqn(self, eqn: Any, invals: list, zeros: set) -> list:
        with _eqn_context(eqn):
            return self._eqn_in_context(eqn, invals, zeros)

    def _eqn_in_context(self, eqn: Any, invals: list, zeros: set) -> list:
        hit = _classify(eqn, zeros)
        if hit is not None and hit.activation is not None:
            params = dict(get_activation(hit.activation).params)
            if hit.param is not None:
                try:
                    params[hit.param] = float(invals[1])
                except jax.errors.ConcretizationTypeError:
                    hit = _Hit(f"{hit.label} with a traced {hit.param}")
            if hit.activation is not None:
                self._overridden(self._site(eqn, hit.label), hit.activation, params)
                out = _with_rule(invals[hit.x_index], hit.activation, self.rule, params)
                return [out.astype(eqn.outvars[0].aval.dtype)]
        if hit is not None:
            self._uncovered(self._site(eqn, hit.label), hit.label)
            return self._bind(eqn, invals)
        outer, self.outer = self.outer, _user_frame(eqn) or self.outer
        try:
            return self._higher_order(eqn, invals)
        finally:
            self.outer = outer

    def _higher_order(self, eqn: Any, invals: list) -> list:
        name = eqn.primitive.name
        if name == "jit":
            closed = eqn.params["jaxpr"]
            return self.eval(closed.jaxpr, closed.consts, invals)
        rewrite = getattr(self, f"_rewrite_{name}", None)
        if rewrite is not None:
            return rewrite(eqn.params, invals)
        if name == "custom_vjp_call" and _origin(eqn.params["call_jaxpr"]) is not None:
            if _origin(eqn.params["call_jaxpr"])[1] in (_RULES_FILE, _THIS_FILE):
                return self._bind(eqn, invals)  # already a backflip rule: keep it
        for sub in jcore.jaxprs_in_params(eqn.params):
            self._probe(sub, f"{name} {_origin(sub)[0] if _origin(sub) else ''}".strip())
        return self._bind(eqn, invals)

    @staticmethod
    def _bind(eqn: Any, invals: list) -> list:
        params = eqn.primitive.get_bind_params(eqn.params)
        if isinstance(params, tuple):  # older JAX: (subfuns, params)
            subfuns, params = params
            invals = [*subfuns, *invals]
        out = eqn.primitive.bind(*invals, **params)
        return list(out) if eqn.primitive.multiple_results else [out]

    def _probe(self, jaxpr: Any, where: str) -> None:
        """Report the watched nonlinearities inside a sub-jaxpr that is kept as it is."""
        jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
        zeros: set = set()
        uses = functools.cache(lambda: _uses(jaxpr))
        skip = 0
        for i, eqn in enumerate(jaxpr.eqns):
            if skip:
                skip -= 1
                continue
            gelu = _match_gelu(jaxpr.eqns, i, uses)
            hit = _Hit("jax.nn.gelu") if gelu else _classify(eqn, zeros)
            if gelu:
                skip = gelu[2] - 1
            if hit is not None:
                label = f"{hit.label} inside the {where} (whose own derivative is kept)"
                self._uncovered(self._site(eqn, label), label)
                continue
            if _keeps_zero(eqn, zeros):
                zeros.add(eqn.outvars[0])
            if eqn.primitive.name == "custom_vjp_call":
                origin = _origin(eqn.params["call_jaxpr"])
                if origin is not None and origin[1] in (_RULES_FILE, _THIS_FILE):
                    continue
            for sub in jcore.jaxprs_in_params(eqn.params):
                self._probe(sub, where)

    # -- higher-order primitives, re-expressed through the public API

    def _traced_once(self, f: Callable) -> Callable:
        """``f`` counts into the report on its first trace only (loops may retrace)."""
        first = [True]

        def wrapped(*args):
            counting, self.counting = self.counting, self.counting and first[0]
            first[0] = False
            try:
                return f(*args)
            finally:
                self.counting = counting

        return wrapped

    def _rewrite_scan(self, p: dict, invals: list) -> list:
        body, nc, ncarry = p["jaxpr"], p["num_consts"], p["num_carry"]
        consts, init, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]

        def step(carry, x):
            outs = self.eval(body.jaxpr, body.consts, [*consts, *carry, *x])
            return outs[:ncarry], outs[ncarry:]

        carry, ys = lax.scan(
            self._traced_once(step), list(init), list(xs), length=p["length"],
            reverse=p["reverse"], unroll=p["unroll"],
        )  # fmt: skip
        return [*carry, *ys]

    def _rewrite_cond(self, p: dict, invals: list) -> list:
        index, *ops = invals
        branches = [self._traced_once(functools.partial(self._run, br)) for br in p["branches"]]
        return list(lax.switch(index, branches, *ops))

    def _run(self, closed: Any, *args: Any) -> list:
        return self.eval(closed.jaxpr, closed.consts, list(args))

    def _rewrite_while(self, p: dict, invals: list) -> list:
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        cc, bc, init = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
        cond, body = p["cond_jaxpr"], p["body_jaxpr"]
        return list(
            lax.while_loop(
                self._traced_once(lambda c: self._run(cond, *cc, *c)[0]),
                self._traced_once(lambda c: self._run(body, *bc, *c)),
                list(init),
            )
        )

    def _rewrite_remat2(self, p: dict, invals: list) -> list:
        jaxpr = p["jaxpr"]
        f = jax.checkpoint(
            self._traced_once(lambda *a: self.eval(jaxpr, [], list(a))),
            prevent_cse=p["prevent_cse"],
            policy=p["policy"],
        )
        return list(f(*invals))


# ------------------------------------------------------------------------- transform


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic)


def override_gradients(
    fn: Callable[..., Any], rule: Rule, strict: bool = True
) -> tuple[Callable[..., Any], OverrideReport]:
    """A version of ``fn`` whose nonlinearities' backward follows ``rule``.

    Forward values are unchanged; the backward of each recognised nonlinearity (the
    module docstring lists them) follows ``rule``: ``"vanilla"``, ``"guided"``,
    ``"deconvnet"`` or ``fn(x, y, g) -> dL/dx`` (the maths is in
    :mod:`backflip.rules`). Returns ``(new_fn, report)``; ``new_fn`` takes the same
    arguments as ``fn`` (array leaves of the argument pytrees are traced, everything
    else, such as a ``train=True`` flag, is passed as it is) and may be wrapped in
    ``jax.jit``, ``jax.grad`` and ``jax.vmap``. Each call (each trace under ``jit``)
    adds what it saw to ``report``; with ``strict=True`` a watched nonlinearity no
    rule covers raises :class:`~backflip.BackflipValueError` naming it and its
    ``file:line``, at trace time.

    >>> import jax, jax.numpy as jnp
    >>> f = lambda x: -jnp.sum(jax.nn.relu(x))
    >>> guided, report = override_gradients(f, "guided")
    >>> jax.grad(f)(jnp.array([1.0, 2.0]))
    Array([-1., -1.], dtype=float32)
    >>> jax.jit(jax.grad(guided))(jnp.array([1.0, 2.0]))  # the negative g is masked
    Array([0., 0.], dtype=float32)
    >>> (report.seen, report.overridden, report.complete)
    (1, 1, True)
    """
    if not callable(fn):
        raise BackflipTypeError(
            f"override_gradients expects a function; got {type(fn).__name__}. Pass the "
            "function that runs the model, e.g. lambda x: model.apply(params, x)."
        )
    check_rule(rule)
    if not isinstance(strict, bool):
        raise BackflipTypeError(f"`strict` must be True or False; got {strict!r}.")
    report = OverrideReport(rule=rule_name(rule), _rule=rule, _checks=(_CHECKER,))

    @functools.wraps(fn)
    def new_fn(*args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        where = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]

        def flat(*dynamic):
            full = list(leaves)
            for i, value in zip(where, dynamic, strict=True):
                full[i] = value
            a, k = jax.tree_util.tree_unflatten(treedef, full)
            return fn(*a, **k)

        dynamic = [leaves[i] for i in where]
        closed, shape = jax.make_jaxpr(flat, return_shape=True)(*dynamic)
        outs = _Interpreter(report, rule, strict).eval(closed.jaxpr, closed.consts, dynamic)
        report.forwards += 1
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), outs)

    return new_fn, report
