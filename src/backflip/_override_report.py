"""The report every framework's ``override_gradients`` yields, and its strictness message.

Framework-neutral: each adapter counts the nonlinearity calls it saw in the model and
the ones whose backward it replaced, names each call site, and hands its framework's
:class:`~backflip._override_verify.Checker` to :meth:`OverrideReport.verify`. A silent
no-op (an override that never ran) shows as ``complete == False`` and ``seen == 0``, and
``verify()`` raises on it.

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
    _checks: tuple = field(default=(), repr=False)  # the adapter's Checker(s)
    _sites_of: dict = field(default_factory=dict, repr=False)  # activations key -> sites

    def _record(self, site: str, activation: str, params: dict) -> None:
        """Count one call whose backward now follows the rule (``seen`` is the caller's)."""
        key = (activation, tuple(sorted(params.items())))
        self.overridden += 1
        self.sites[site] += 1
        self.activations[key] += 1
        self._sites_of.setdefault(key, {})[site] = None

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
        """Check, on a fixed probe, that each activation seen follows the rule (or ``rule``).

        For each activation (and parameters) in :attr:`activations`, the framework's
        ``dL/dx`` of the overridden activation is compared with the NumPy reference
        :func:`backflip.rules.apply_rule`; a difference raises
        :class:`~backflip.OverrideCheckError` naming the activation, its call sites, the
        rule and the largest difference. Raises :class:`~backflip.BackflipValueError`
        when no nonlinearity call was seen yet.
        """
        if self.seen == 0:
            raise BackflipValueError(
                "override_gradients saw no nonlinearity call: run the model's forward "
                "inside the `with` block (or call the transformed function) before calling "
                "report.verify()."
            )
        if not self._checks:  # pragma: no cover - every backend passes one
            raise BackflipValueError("this report has no checker to verify with.")
        for key in self.activations:
            activation, params = key
            sites = list(self._sites_of.get(key, ()))
            for check in self._checks:
                check.check(activation, dict(params), self._rule if rule is None else rule, sites)
