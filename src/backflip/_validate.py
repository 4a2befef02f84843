"""Framework-neutral argument checks shared by every backend.

Each check takes a plain Python number (backends convert 0-d tensors with
``float(...)`` before calling) and returns it as a ``float``; a bad value raises
:class:`~backflip.BackflipValueError` naming the value and the fix.
"""

from __future__ import annotations

import math
from numbers import Real

from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = [
    "check_clip_bounds",
    "check_factor",
    "check_lambd",
    "check_max_norm",
    "check_progress",
]


def _as_float(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise BackflipTypeError(
            f"`{name}` of {where} must be a real number or a 0-d tensor; got "
            f"{value!r} of type {type(value).__name__}."
        )
    return float(value)


def check_lambd(lambd: object, where: str = "reverse_gradient") -> float:
    """Return ``lambd`` as a float; it must be finite and ``>= 0``.

    >>> check_lambd(0.5)
    0.5
    """
    value = _as_float(lambd, "lambd", where)
    if not math.isfinite(value) or value < 0:
        raise BackflipValueError(
            f"`lambd` of {where} must be finite and >= 0; got {value!r}. "
            "Pass a float, a 0-d tensor, or use a schedule such as "
            "backflip.schedules.dann_lambda. To flip the sign of a gradient without "
            "the reversal's -1, use scale_gradient(x, factor) instead."
        )
    return value


def check_factor(factor: object, where: str = "scale_gradient") -> float:
    """Return ``factor`` as a float; it must be finite (any sign)."""
    value = _as_float(factor, "factor", where)
    if not math.isfinite(value):
        raise BackflipValueError(
            f"`factor` of {where} must be finite; got {value!r}. "
            "Use a finite float such as 0.5 (halve) or -1.0 (flip)."
        )
    return value


def check_clip_bounds(
    min: object | None, max: object | None, where: str = "clip_gradient"
) -> tuple[float | None, float | None]:
    """Return ``(min, max)`` as floats or ``None``; at least one must be given, ``min <= max``."""
    if min is None and max is None:
        raise BackflipValueError(
            f"{where} needs at least one of `min` and `max`; got both None. "
            "Pass e.g. min=-0.1, max=0.1."
        )
    lo = None if min is None else _as_float(min, "min", where)
    hi = None if max is None else _as_float(max, "max", where)
    for name, v in (("min", lo), ("max", hi)):
        if v is not None and math.isnan(v):
            raise BackflipValueError(f"`{name}` of {where} must not be NaN; got {v!r}.")
    if lo is not None and hi is not None and lo > hi:
        raise BackflipValueError(
            f"`min` of {where} must be <= `max`; got min={lo!r}, max={hi!r}. Swap them."
        )
    return lo, hi


def check_max_norm(max_norm: object, where: str = "clip_gradient_norm") -> float:
    """Return ``max_norm`` as a float; it must be finite and ``> 0``."""
    value = _as_float(max_norm, "max_norm", where)
    if not math.isfinite(value) or value <= 0:
        raise BackflipValueError(
            f"`max_norm` of {where} must be finite and > 0; got {value!r}. Pass e.g. 1.0."
        )
    return value


def check_progress(p: object, where: str = "schedule") -> float:
    """Return training progress ``p`` as a float; it must lie in ``[0, 1]``."""
    value = _as_float(p, "p", where)
    if not (0.0 <= value <= 1.0):
        raise BackflipValueError(
            f"training progress `p` of {where} must lie in [0, 1]; got {value!r}. "
            "Pass p = step / total_steps."
        )
    return value
