"""The report every framework's ``override_gradients`` yields, and its strictness message.

Framework-neutral: each adapter counts the nonlinearity calls it saw in the model and
the ones whose backward it replaced, names each call site, and hands a per-activation
checker to :meth:`OverrideReport.verify`. A silent no-op (an override that never ran)
shows as ``complete == False`` and ``seen == 0``, and ``verify()`` raises on it.

>>> report = OverrideReport(rule="guided", seen=2, overridden=2, forwards=1)
>>> report.sites["module 'fc' (ReLU)"] += 2
>>> report.complete
True
>>> print(report)
override_gradients(rule=guided): 2/2 nonlinearity calls overridden in 1 forward pass(es)
     2 x module 'fc' (ReLU)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backflip._errors import BackflipValueError

__all__ = ["COVERED_ACTIVATIONS", "OverrideReport", "rule_name", "strict_error"]

#: The nonlinearities every backend's override covers (their rules are in backflip.rules).
COVERED_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus")


def rule_name(rule: Any) -> str:
    """``"guided"`` for a built-in rule, the function's name for a user rule."""
    return rule if isinstance(rule, str) else getattr(rule, "__name__", repr(rule))


def strict_error(rule: str, site: str, label: str) -> BackflipValueError:
    """The error ``strict=True`` raises for a nonlinearity no rule covers."""
    return BackflipValueError(
        f"override_gradients(strict=True) cannot apply the rule {rule!r} to {site}: no "
        f"gradient rule covers {label}. Replace it with a covered activation "
        f"({', '.join(COVERED_ACTIVATIONS)}), or pass strict=False to keep its default "
        "gradient and list it in the report."
    )


@dataclass
class OverrideReport:
    """What ``override_gradients`` saw while it ran.

    ``seen``: nonlinearity calls inside the model (covered or not); ``overridden``:
    those whose backward now follows ``rule``; ``not_overridden``: call sites it could
    not override (only with ``strict=False``); ``sites``: calls per overridden call
    site; ``activations``: calls per (activation, parameters). ``complete`` is true
    when at least one call was seen and all were overridden. Each overridden call's
    backward follows the rule, e.g. ``"guided"``: ``dL/dx = dL/dy * act'(x) * 1[dL/dy > 0]``.

    >>> report = OverrideReport(rule="guided")  # as yielded before any forward pass
    >>> report.complete
    False
    >>> report.verify()
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: override_gradients saw no nonlinearity call: ...
    """

    rule: str
    seen: int = 0
    overridden: int = 0
    forwards: int = 0
    not_overridden: list[str] = field(default_factory=list)
    sites: Counter = field(default_factory=Counter)
    activations: Counter = field(default_factory=Counter)
    _rule: Any = field(default=None, repr=False)
    _verify_one: Callable[[str, dict, Any], None] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return self.seen > 0 and self.overridden == self.seen

    def __str__(self) -> str:
        lines = [
            f"override_gradients(rule={self.rule}): {self.overridden}/{self.seen} "
            f"nonlinearity calls overridden in {self.forwards} forward pass(es)"
        ]
        lines += [f"  {n:4d} x {site}" for site, n in self.sites.items()]
        lines += [f"  NOT overridden: {site}" for site in self.not_overridden]
        return "\n".join(lines)

    def verify(self, rule: Any = None) -> None:
        """Check, on random inputs, that each activation seen follows the rule.

        The backend's checker compares the overridden activation's VJP with the rule
        applied to the framework's own derivative and, for guided/deconvnet, requires it
        to differ from the default VJP; it raises ``GradientCheckError`` otherwise.
        """
        if self.seen == 0:
            raise BackflipValueError(
                "override_gradients saw no nonlinearity call: run the model's forward "
                "inside the `with` block (or call the transformed function) before calling "
                "report.verify()."
            )
        if self._verify_one is None:  # pragma: no cover - every backend passes one
            raise BackflipValueError("this report has no checker to verify with.")
        for activation, params in self.activations:
            self._verify_one(activation, dict(params), self._rule if rule is None else rule)
