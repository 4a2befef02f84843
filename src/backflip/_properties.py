"""Property-based conformance: Hypothesis strategies and the NumPy comparison (private).

Framework-neutral: it imports no framework, and Hypothesis only inside the functions
that build strategies, so ``import backflip`` (and this module) works without it.
``tests/conformance/test_properties.py`` draws, for every backend,

* :func:`valid_cases`: a :class:`PropCase` (op, parameters, ``x``, ``g``, dtype) whose
  shapes include ``()``, ``(0,)``, ``(0, 3)``, small ones and, rarely, ``(4096,)``;
  parameters include 0, tiny and huge finite values. The backend runs the op
  forward and backward and calls :func:`check_result`, which compares with the
  NumPy reference of :mod:`backflip.rules`;
* :func:`invalid_cases`: a :class:`BadCase` (op, bad parameters) for which every
  backend must raise :attr:`BadCase.error` matching :attr:`BadCase.match`, the same
  message the core's checks (:mod:`backflip._validate`) raise.

Ops: ``reverse``, ``scale``, ``clip``, ``clip_norm``, ``relu_guided``, ``relu_deconvnet``
(the names of :mod:`backflip.conformance`).

>>> case = PropCase("scale", {"factor": 2.0}, np.ones(3, "float32"), np.ones(3, "float32"))
>>> y, dx = case.expected()
>>> dx.tolist(), dx.dtype.name
([2.0, 2.0, 2.0], 'float32')
>>> check_result(case, np.ones(3, "float32"), np.full(3, 2.0, "float32"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from backflip._errors import BackflipError, BackflipTypeError, BackflipValueError
from backflip.conformance import op_reference

__all__ = [
    "OPS",
    "PER_OP",
    "BadCase",
    "PropCase",
    "check_result",
    "invalid_cases",
    "settings",
    "valid_cases",
]

OPS = ("reverse", "scale", "clip", "clip_norm", "relu_guided", "relu_deconvnet")
"""The ops every backend's property tests run."""

DTYPES = ("float32", "float64")

PER_OP = 20
"""Examples per op and backend (``settings(max_examples=PER_OP)``)."""

#: relative tolerance per dtype; clip_norm sums up to 4096 squares in the dtype
_RTOL = {"float32": 2e-5, "float64": 1e-12}

#: magnitudes of the upstream gradient ``g``: zero (a zero norm), tiny, 1 and huge,
#: chosen so that ``g**2`` neither underflows nor overflows in float32
G_SCALES = (0.0, 1e-10, 1.0, 1e10)

SPECIAL_SHAPES = ((), (0,), (0, 3), (1,), (4096,))
LARGE = (4096,)

TINY = 1e-30
HUGE = 1e30
"""The largest parameter magnitude drawn for float32: finite there (max ~3.4e38)."""
TINY64 = 1e-300
HUGE64 = 1e300
"""The extremes drawn for float64 only (they are 0 and inf in float32)."""


@dataclass(frozen=True)
class PropCase:
    """One drawn example: ``op`` with ``params`` on input ``x``, upstream gradient ``g``."""

    op: str
    params: dict[str, float | None]
    x: np.ndarray = field(repr=False)
    g: np.ndarray = field(repr=False)

    @property
    def dtype(self) -> str:
        return self.x.dtype.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    def __repr__(self) -> str:  # short: a 4096-element array would swamp the report
        return (
            f"PropCase(op={self.op!r}, params={self.params!r}, shape={self.shape}, "
            f"dtype={self.dtype!r}, |g|max={float(np.abs(self.g).max(initial=0.0)):g})"
        )

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y, dx)`` from :mod:`backflip.rules`, in float64 and cast back to ``dtype``."""
        with np.errstate(over="ignore"):  # a huge factor may overflow: inf on both sides
            return self._expected()

    def _expected(self) -> tuple[np.ndarray, np.ndarray]:
        x64, g64 = self.x.astype(np.float64), self.g.astype(np.float64)
        y, dx = op_reference(self.op, self.params, x64, g64)
        return y.astype(self.dtype), np.asarray(dx).astype(self.dtype)


def _close(name: str, got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    assert got.dtype.name == dtype, f"{name}: dtype {got.dtype.name} != {dtype}"
    rtol = _RTOL[dtype]
    finite = want[np.isfinite(want)]
    scale = float(np.abs(finite).max(initial=0.0))
    # absolute slack: relative to the largest value, plus the smallest normal number
    # (a backend may flush a subnormal result to zero)
    atol = rtol * scale + float(np.finfo(dtype).tiny)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def check_result(case: PropCase, y: np.ndarray, dx: np.ndarray) -> None:
    """Assert a backend's forward ``y`` and input gradient ``dx`` match the reference."""
    y_want, dx_want = case.expected()
    _close(f"{case!r}: forward", y, y_want, case.dtype)
    _close(f"{case!r}: gradient", dx, dx_want, case.dtype)


@dataclass(frozen=True)
class BadCase:
    """An invalid call: ``op`` with ``params``; every backend raises ``error`` matching ``match``."""

    op: str
    params: dict[str, object]
    error: type[BackflipError]
    match: str
    shape: tuple[int, ...] = (3,)
    dtype: str = "float32"

    def x(self) -> np.ndarray:
        return np.ones(self.shape, self.dtype)


# --- strategies (Hypothesis imported lazily) ------------------------------------------


def settings(max_examples: int = 40):
    """The property tests' settings: derandomized (reproducible in CI), no deadline."""
    from hypothesis import HealthCheck
    from hypothesis import settings as _settings

    return _settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _shapes():
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import array_shapes

    small = array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
    special = st.sampled_from(SPECIAL_SHAPES[:-1])

    @st.composite
    def shapes(draw):
        if draw(st.integers(0, 19)) == 19:  # the large tensor, rarely
            return LARGE
        return draw(st.one_of(special, small))

    return shapes()


def _magnitudes(dtype: str, *, positive: bool = False):
    """Parameter values: 0 (unless ``positive``), tiny, ordinary and huge finite ones.

    float64 examples also get ``1e-300`` and ``1e300``.
    """
    from hypothesis import strategies as st

    lo, hi = (TINY64, HUGE64) if dtype == "float64" else (TINY, HUGE)
    edges = [lo, TINY, 1e-6, 0.5, 1.0, 3.0, HUGE, hi] + ([] if positive else [0.0])
    values = st.one_of(
        st.sampled_from(edges),
        st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False),
    )
    return values


def _params(op: str, dtype: str):
    from hypothesis import strategies as st

    mag = _magnitudes(dtype)
    signed = st.tuples(mag, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
    if op == "reverse":
        return st.fixed_dictionaries({"lambd": mag})
    if op == "scale":
        return st.fixed_dictionaries({"factor": signed})
    if op == "clip":
        bound = st.one_of(st.none(), signed, st.sampled_from([-np.inf, np.inf]))

        def ordered(t):
            lo, hi = t
            if lo is not None and hi is not None and lo > hi:
                lo, hi = hi, lo
            return {"min": lo, "max": hi}

        return (
            st.tuples(bound, bound)
            .filter(lambda t: t != (None, None))
            .map(ordered)
        )
    if op == "clip_norm":
        return st.fixed_dictionaries({"max_norm": _magnitudes(dtype, positive=True)})
    return st.just({})


def valid_cases(ops: tuple[str, ...] = OPS, dtypes: tuple[str, ...] = DTYPES):
    """Strategy of :class:`PropCase`: random op, parameters, shape, dtype, ``x`` and ``g``."""
    from hypothesis import strategies as st

    @st.composite
    def cases(draw):
        op = draw(st.sampled_from(ops))
        dtype = draw(st.sampled_from(dtypes))
        params = draw(_params(op, dtype))
        shape = draw(_shapes())
        seed = draw(st.integers(0, 2**16))
        scale = draw(st.sampled_from(G_SCALES))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape) * scale
        if draw(st.booleans()):  # some exact zeros in g (the rules' 1[g > 0] boundary)
            g = np.where(rng.random(shape) < 0.3, 0.0, g)
        return PropCase(op, params, x, np.asarray(g).astype(dtype))

    return cases()


_FINITE_GE0 = "`lambd` of reverse_gradient must be finite and >= 0"
_FACTOR = "`factor` of scale_gradient must be finite"
_MAX_NORM = "`max_norm` of clip_gradient_norm must be finite and > 0"


def _type_msg(name: str, where: str) -> str:
    return f"`{name}` of {where} must be a real number or a 0-d tensor"


def invalid_cases(dtypes: tuple[str, ...] = DTYPES):
    """Strategy of :class:`BadCase`: every kind of invalid parameter each op documents."""
    from hypothesis import strategies as st

    nonfinite = st.sampled_from([np.nan, np.inf, -np.inf])
    negative = st.one_of(
        st.sampled_from([-TINY, -1.0, -HUGE, -5e-324]),
        st.floats(max_value=0.0, exclude_max=True, allow_nan=False, allow_infinity=False),
    )
    not_number = st.sampled_from([True, False, "0.5", [0.5]])
    finite = st.floats(min_value=-HUGE, max_value=HUGE, allow_nan=False)

    def bad(op, key, values, error, match, **fixed):
        return values.map(lambda v: BadCase(op, {**fixed, key: v}, error, re.escape(match)))

    def swapped(t):
        lo, hi = sorted(t)
        return BadCase(
            "clip", {"min": hi, "max": lo}, BackflipValueError,
            re.escape("`min` of clip_gradient must be <= `max`"),
        )

    kinds = st.one_of(
        bad("reverse", "lambd", st.one_of(nonfinite, negative), BackflipValueError, _FINITE_GE0),
        bad("reverse", "lambd", not_number, BackflipTypeError,
            _type_msg("lambd", "reverse_gradient")),
        bad("scale", "factor", nonfinite, BackflipValueError, _FACTOR),
        bad("scale", "factor", not_number, BackflipTypeError,
            _type_msg("factor", "scale_gradient")),
        bad("clip_norm", "max_norm", st.one_of(nonfinite, negative, st.just(0.0)),
            BackflipValueError, _MAX_NORM),
        bad("clip_norm", "max_norm", not_number, BackflipTypeError,
            _type_msg("max_norm", "clip_gradient_norm")),
        bad("clip", "min", st.just(np.nan), BackflipValueError,
            "`min` of clip_gradient must not be NaN", max=1.0),
        bad("clip", "max", st.just(np.nan), BackflipValueError,
            "`max` of clip_gradient must not be NaN", min=-1.0),
        st.just(BadCase("clip", {"min": None, "max": None}, BackflipValueError,
                        re.escape("clip_gradient needs at least one of `min` and `max`"))),
        st.tuples(finite, finite).filter(lambda t: t[0] != t[1]).map(swapped),
    )

    @st.composite
    def cases(draw):
        case = draw(kinds)
        shape = draw(st.sampled_from([(), (0,), (3,), (2, 3)]))
        dtype = draw(st.sampled_from(dtypes))
        return BadCase(case.op, case.params, case.error, case.match, shape, dtype)

    return cases()
