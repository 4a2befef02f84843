"""``report.verify()``, once for every framework: its gradient against backflip.rules' NumPy one.

Each adapter describes its framework with a :class:`Checker`, whose ``gradient(x,
activation, rule, params, g)`` returns ``dL/dx`` of ``activation_with_rule(x, activation,
rule, **params)`` at ``x`` for the cotangent ``g`` (NumPy in and out). :meth:`Checker.check`
draws a fixed probe, asks for that gradient and compares it with
:func:`backflip.rules.apply_rule` at the same points; for a user rule the reference is the
rule itself, called on the framework's arrays of ``x``, the NumPy forward ``y`` and ``g``.
A difference raises :class:`~backflip.OverrideCheckError` naming the activation, its call
sites, the rule, the largest difference and what to do. Imports no framework.

One variant that the PyTorch adapter accepts and backflip.rules does not model gets
its NumPy forward and derivative here: PyTorch's softplus ``threshold`` (linear, with
derivative 1, where ``beta * x > threshold``). JAX's ``approximate=True`` GELU is
backflip.rules' ``approximate="tanh"``.

>>> checker = Checker("NumPy", lambda x, activation, rule, params, g: np.where(g > 0, g, 0))
>>> checker.check("relu", {}, "deconvnet", ["F.relu at net.py:3"])  # the rule: passes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backflip._errors import OverrideCheckError
from backflip._override_report import rule_name
from backflip.rules import apply_rule, get_activation

__all__ = ["Checker", "reference"]

# gradient(x, activation, rule, params, g) -> dL/dx, NumPy arrays of the checker's dtype
Gradient = Callable[[np.ndarray, str, Any, dict, np.ndarray], np.ndarray]

#: (rtol, atol) by the probe's dtype: the framework's result against a float64 reference
_TOL = {"float32": (1e-5, 1e-5), "float64": (1e-7, 1e-7)}
_PROBE_SIZE = 256
def _variant(activation: str, params: dict) -> tuple[Callable, Callable] | None:
    """NumPy (forward, derivative) of an adapter-only variant, None for backflip.rules' own."""
    if activation == "softplus" and "threshold" in params:
        beta, threshold = params.get("beta", 1.0), params["threshold"]
        act = get_activation("softplus")
        return (
            lambda x: np.where(beta * x > threshold, x, act.forward(x, beta=beta)),
            lambda x: np.where(beta * x > threshold, 1.0, act.derivative(x, beta=beta)),
        )
    return None


def reference(rule: Any, activation: str, x: np.ndarray, g: np.ndarray, params: dict) -> np.ndarray:
    """NumPy ``dL/dx`` of ``rule`` for ``activation(x, **params)`` at ``x``, upstream ``g``.

    :func:`backflip.rules.apply_rule`, extended to the two variants above; a user rule is
    called as ``rule(x, y, g)`` on float64 NumPy arrays.

    >>> reference("guided", "gelu", np.array([1.0, 1.0]), np.array([1.0, -1.0]),
    ...           {"approximate": "none"}).round(4)
    array([1.0833, 0.    ])
    """
    if isinstance(params.get("approximate"), bool):  # JAX's spelling of the GELU variant
        params = {**params, "approximate": "tanh" if params["approximate"] else "none"}
    variant = _variant(activation, params)
    if variant is None:
        own = get_activation(activation).params
        return apply_rule(rule, activation, x, g, **{k: v for k, v in params.items() if k in own})
    forward, derivative = variant
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    if callable(rule):
        out = rule(x64, forward(x64), g64)
    else:
        up = g64 if rule == "vanilla" else np.where(g64 > 0, g64, 0.0)
        out = up if rule == "deconvnet" else up * derivative(x64)
    return np.asarray(out).astype(np.asarray(g).dtype)


def _error(message: str, max_abs_error: float) -> OverrideCheckError:
    return OverrideCheckError(message)


def _name(activation: str, params: dict) -> str:
    if not params:
        return activation
    return f"{activation}({', '.join(f'{k}={v!r}' for k, v in sorted(params.items()))})"


def _where(sites: Sequence[str]) -> str:
    if not sites:
        return ""
    shown = ", ".join(sites[:2])
    more = len(sites) - 2
    return f" at {shown}" + (f" and {more} more site{'s' * (more > 1)}" if more > 0 else "")


@dataclass(frozen=True)
class Checker:
    """How one framework answers ``report.verify()``: its gradient, dtype and arrays.

    ``gradient(x, activation, rule, params, g)``: ``dL/dx`` of the framework's
    ``activation_with_rule`` (or what ``override_gradients`` routes a call to) as NumPy;
    ``tensor``/``numpy`` convert a NumPy array to the framework's and back, to call a user
    rule; ``error(message, max_abs_error)`` makes the exception (PyTorch's is a
    ``GradientCheckError``, which is an :class:`~backflip.OverrideCheckError`).
    """

    framework: str
    gradient: Gradient
    dtype: str = "float32"
    tensor: Callable[[np.ndarray], Any] = np.asarray
    numpy: Callable[[Any], np.ndarray] = np.asarray
    error: Callable[[str, float], OverrideCheckError] = _error

    def check(self, activation: str, params: dict, rule: Any, sites: Sequence[str] = ()) -> None:
        """Raise unless the framework's ``dL/dx`` matches :func:`reference` on the probe."""
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(_PROBE_SIZE) * 3).astype(self.dtype)
        g = rng.standard_normal(_PROBE_SIZE).astype(self.dtype)
        want = reference(self._numpy_rule(rule), activation, x, g, params)
        got = np.asarray(self.gradient(x, activation, rule, params, g), np.float64)
        got = np.broadcast_to(got, x.shape)
        rtol, atol = _TOL[self.dtype]
        if np.allclose(got, want, rtol=rtol, atol=atol):
            return
        diff = np.abs(got - want)
        i = int(np.argmax(np.where(np.isnan(diff), np.inf, diff)))
        err = float(diff[i])
        advice = (
            "Check that the rule computes dL/dx elementwise from its (x, y, g) alone, shaped "
            "like x (its reference here is the rule itself); if it does, please report this "
            "as a backflip bug with this message."
            if callable(rule) else
            "Gradients taken inside the block are wrong for it: please report this as a "
            f"backflip bug with this message and your {self.framework} version."
        )  # fmt: skip
        raise self.error(
            f"report.verify(): {_name(activation, params)}{_where(list(sites))} does not "
            f"follow the rule {rule_name(rule)!r}: {self.framework}'s dL/dx differs from "
            f"the NumPy reference by up to {err:.3g} (at x={x[i]:.3g}, g={g[i]:.3g}: got "
            f"{got[i]:.3g}, expected {want[i]:.3g}; rtol={rtol:g}, atol={atol:g}, "
            f"{_PROBE_SIZE} probe points). {advice}",
            err,
        )

    def _numpy_rule(self, rule: Any) -> Any:
        """A user rule written with the framework's ops, callable on NumPy arrays."""
        if not callable(rule):
            return rule

        def on_numpy(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
            args = (self.tensor(np.asarray(a, self.dtype)) for a in (x, y, g))
            return np.asarray(self.numpy(rule(*args)), np.float64)

        return on_numpy
