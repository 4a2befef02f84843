"""``check_gradient``: proof that a gradient rule is in effect (not just a derivative check).

Finite differences cannot test rules such as the reversal or guided backprop: they are
not derivatives of the forward. ``check_gradient`` instead compares autograd's
vector-Jacobian products with the rule, for several random cotangents, and (given the
default function) checks that the rule's result *differs* from the default gradient,
so an override that is silently ignored fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from backflip._errors import BackflipTypeError, OverrideCheckError

__all__ = ["GradientCheckError", "GradientReport", "check_gradient"]

# (rtol, atol) by dtype, close to torch.testing.assert_close's defaults.
_TOL = {
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1.6e-2, 1e-2),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


class GradientCheckError(OverrideCheckError):
    """A :func:`check_gradient` check failed; ``.report`` holds the :class:`GradientReport`.

    A :class:`~backflip.OverrideCheckError` (so a :class:`~backflip.BackflipError` and an
    :class:`AssertionError`): ``except backflip.OverrideCheckError`` catches every failed
    gradient check, and a failed ``report.verify()`` of
    :func:`backflip.torch.override_gradients` raises this class, as it always has. Here the identity's gradient ``dL/dx = dL/dy`` is
    checked against the reversal rule ``dL/dx = -dL/dy``, and fails:

    >>> def reversal(x, output, grad_output):
    ...     return -grad_output
    >>> try:
    ...     check_gradient(lambda x: x * 1.0, torch.ones(2), reversal)
    ... except AssertionError as err:
    ...     print(type(err).__name__, err.report.failed_check)
    GradientCheckError expected
    """

    def __init__(self, report: GradientReport) -> None:
        super().__init__(report.message)
        self.report = report


@dataclass(frozen=True)
class GradientReport:
    """Outcome of :func:`check_gradient`.

    ``failed_check`` is ``None`` when all passed, else one of ``"forward"`` (``fn`` and
    ``default_fn`` disagree on the output), ``"no_gradient"`` (an input got no gradient),
    ``"expected"`` (autograd's VJP differs from the rule) or ``"differs_from_default"``
    (the VJP equals the default one everywhere: the rule is not in effect).
    ``differs_from_default`` is ``None`` without ``default_fn``.

    >>> report = check_gradient(lambda x: x * 2.0, torch.ones(3),  # dL/dx = 2 * dL/dy
    ...                         lambda x, output, grad_output: 2.0 * grad_output)
    >>> report.ok, report.failed_check, report.differs_from_default, report.max_abs_error
    (True, None, None, 0.0)
    >>> report.message
    'check_gradient: all checks passed (max abs error 0).'
    """

    ok: bool
    max_abs_error: float
    differs_from_default: bool | None
    failed_check: str | None
    message: str


def _tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def check_gradient(
    fn: Callable[..., torch.Tensor],
    inputs: torch.Tensor | Sequence[torch.Tensor],
    expected: Callable[..., torch.Tensor | Sequence[torch.Tensor]],
    *,
    default_fn: Callable[..., torch.Tensor] | None = None,
    n_cotangents: int = 3,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    raise_on_failure: bool = True,
) -> GradientReport:
    """Check that autograd's gradient of ``fn`` follows the rule ``expected``.

    For ``n_cotangents`` random cotangents ``g`` (standard normal, seeded), computes the
    VJP ``dL/dx_i`` of ``y = fn(*inputs)`` with autograd and compares it with
    ``expected(*inputs, output=y, grad_output=g)``, which returns one gradient per input
    (a single tensor when there is one input). ``inputs`` are detached copies, so the
    rule may use them freely. Given ``default_fn`` (the same forward with the default
    backward, e.g. ``lambda x: x`` for a reversal), also checks that the forwards agree
    and that the rule's VJP differs from the default VJP somewhere. Tolerances default to
    those of ``torch.testing.assert_close`` for the output's dtype.

    Returns a :class:`GradientReport`; on failure raises :class:`GradientCheckError`
    naming the failed check unless ``raise_on_failure=False``.

    >>> from backflip.torch import reverse_gradient
    >>> report = check_gradient(
    ...     lambda x: reverse_gradient(x, 0.5), torch.randn(3),
    ...     lambda x, output, grad_output: -0.5 * grad_output, default_fn=lambda x: x)
    >>> report.ok, report.differs_from_default
    (True, True)
    """
    raw = _tuple(inputs)
    for i, x in enumerate(raw):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise BackflipTypeError(
                f"check_gradient needs floating-point tensor inputs; input {i} has dtype "
                f"{got}. Cast it with .float() or .double()."
            )
    xs = tuple(t.detach().clone().requires_grad_(True) for t in raw)
    y = fn(*xs)
    d_rtol, d_atol = _TOL.get(y.dtype, (1e-5, 1e-8))
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    y_default = None if default_fn is None else default_fn(*xs)
    gen = torch.Generator().manual_seed(seed)
    max_err, differs = 0.0, False

    def report(failed: str | None, detail: str) -> GradientReport:
        diff = None if default_fn is None else differs
        r = GradientReport(failed is None, max_err, diff, failed, detail)
        if failed is not None and raise_on_failure:
            raise GradientCheckError(r)
        return r

    if y_default is not None and not torch.allclose(
        y.detach(), y_default.detach(), rtol=rtol, atol=atol
    ):
        return report(
            "forward",
            "check_gradient: check 'forward' failed: fn and default_fn "
            "give different outputs; default_fn must have the same forward.",
        )
    for k in range(n_cotangents):
        g = torch.randn(y.shape, generator=gen, dtype=torch.float32).to(y.dtype)
        got = torch.autograd.grad(y, xs, g, retain_graph=True, allow_unused=True)
        if any(v is None for v in got):
            i = next(i for i, v in enumerate(got) if v is None)
            return report(
                "no_gradient",
                f"check_gradient: check 'no_gradient' failed: "
                f"input {i} got no gradient from fn (is it used?).",
            )
        want = _tuple(expected(*(x.detach() for x in xs), output=y.detach(), grad_output=g))
        if len(want) != len(xs):
            raise BackflipTypeError(
                f"check_gradient: `expected` returned {len(want)} gradient(s) for "
                f"{len(xs)} input(s); return one per input."
            )
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            b = torch.as_tensor(b, dtype=a.dtype).expand_as(a)
            err = (a - b).abs().max().item() if a.numel() else 0.0
            max_err = max(max_err, err)
            if not torch.allclose(a, b, rtol=rtol, atol=atol):
                return report(
                    "expected",
                    f"check_gradient: check 'expected' failed: for "
                    f"cotangent {k}, input {i}'s autograd gradient differs from "
                    f"the expected rule by up to {err:.3g} (rtol={rtol}, "
                    f"atol={atol}).",
                )
        if y_default is not None:
            ref = torch.autograd.grad(y_default, xs, g, retain_graph=True, allow_unused=True)
            for a, r in zip(got, ref, strict=True):
                r = torch.zeros_like(a) if r is None else r
                differs = differs or not torch.allclose(a, r, rtol=rtol, atol=atol)
    if default_fn is not None and not differs:
        return report(
            "differs_from_default",
            "check_gradient: check 'differs_from_default' "
            "failed: the gradient equals default_fn's for every cotangent, so the "
            "rule is not in effect (or the case cannot tell them apart).",
        )
    return report(None, f"check_gradient: all checks passed (max abs error {max_err:.3g}).")
