"""check_gradient: passes a real rule, and fails (naming the check) for each kind of defect."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip import BackflipError, BackflipTypeError  # noqa: E402
from backflip.torch import GradientCheckError, check_gradient, reverse_gradient  # noqa: E402

NEG = lambda x, output, grad_output: -grad_output  # noqa: E731


def test_passes_and_reports():
    r = check_gradient(reverse_gradient, torch.randn(4), NEG, default_fn=lambda x: x)
    assert (r.ok, r.failed_check, r.differs_from_default) == (True, None, True)
    assert r.max_abs_error == 0.0 and "all checks passed" in r.message
    assert check_gradient(reverse_gradient, torch.randn(4), NEG).differs_from_default is None


def test_silently_ignored_override_fails():
    # an "override" that does nothing: the gradient equals the default one
    with pytest.raises(GradientCheckError, match=r"check 'differs_from_default' failed"):
        check_gradient(
            lambda x: x * 1.0,
            torch.randn(4),
            lambda x, output, grad_output: grad_output,
            default_fn=lambda x: x,
        )


def test_wrong_rule_fails_with_report():
    r = check_gradient(
        lambda x: reverse_gradient(x, 0.5), torch.randn(4), NEG, raise_on_failure=False
    )
    assert not r.ok and r.failed_check == "expected" and r.max_abs_error > 0.01
    with pytest.raises(GradientCheckError, match=r"check 'expected' failed: for cotangent 0") as e:
        check_gradient(lambda x: reverse_gradient(x, 0.5), torch.randn(4), NEG)
    assert isinstance(e.value, AssertionError) and isinstance(e.value, BackflipError)
    assert e.value.report.failed_check == "expected"


def test_forward_mismatch_and_unused_input():
    with pytest.raises(GradientCheckError, match=r"check 'forward' failed"):
        check_gradient(reverse_gradient, torch.randn(3), NEG, default_fn=lambda x: 2 * x)
    with pytest.raises(GradientCheckError, match=r"check 'no_gradient' failed: input 1"):
        check_gradient(
            lambda x, w: reverse_gradient(x),
            (torch.randn(3), torch.randn(3)),
            lambda x, w, output, grad_output: (-grad_output, grad_output),
        )


def test_bad_arguments():
    with pytest.raises(BackflipTypeError, match=r"input 0 has dtype torch.int64"):
        check_gradient(reverse_gradient, torch.ones(3, dtype=torch.int64), NEG)
    with pytest.raises(BackflipTypeError, match=r"`expected` returned 2 gradient\(s\) for 1"):
        check_gradient(reverse_gradient, torch.ones(3), lambda x, output, grad_output: (1, 2))
