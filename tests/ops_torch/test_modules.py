"""GradientReversal / GradientScale / GradientClip: buffers, schedule, repr, copy, pickle."""

from __future__ import annotations

import copy
import pickle

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip import BackflipValueError  # noqa: E402
from backflip.schedules import dann_lambda  # noqa: E402
from backflip.torch import (  # noqa: E402
    GradientClip,
    GradientReversal,
    GradientScale,
    check_gradient,
)


def _grad(module, x=None):
    x = torch.ones(3) if x is None else x
    x = x.clone().requires_grad_(True)
    (module(x) * torch.tensor([1.0, -2.0, 3.0])).sum().backward()
    return x.grad


def test_modules_apply_their_rules():
    assert check_gradient(
        GradientReversal(0.25),
        torch.randn(3),
        lambda x, output, grad_output: -0.25 * grad_output,
        default_fn=lambda x: x,
    ).ok
    assert check_gradient(
        GradientScale(-2.0),
        torch.randn(3),
        lambda x, output, grad_output: -2.0 * grad_output,
        default_fn=lambda x: x,
    ).ok
    assert check_gradient(
        GradientClip(-0.5, 0.5),
        torch.randn(3),
        lambda x, output, grad_output: grad_output.clamp(-0.5, 0.5),
        default_fn=lambda x: x,
    ).ok


def test_lambd_buffer_in_place_and_schedule():
    grl = GradientReversal(schedule=dann_lambda)
    buf = grl.lambd
    assert "lambd" in dict(grl.named_buffers()) and buf.dtype == torch.float32 and buf.dim() == 0
    grl.set_progress(0.0)
    assert float(grl.lambd) == 0.0 and grl.lambd is buf
    grl.set_progress(0.5)
    assert float(grl.lambd) == pytest.approx(dann_lambda(0.5))
    assert torch.allclose(_grad(grl), -dann_lambda(0.5) * torch.tensor([1.0, -2.0, 3.0]))
    grl.set_lambd(torch.tensor(3.0))
    assert grl.lambd is buf and float(buf) == 3.0
    scale = GradientScale(1.0)
    scale.set_factor(-0.5)
    assert torch.equal(_grad(scale), torch.tensor([-0.5, 1.0, -1.5]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: GradientReversal(-1.0), r"`lambd` of GradientReversal must be finite and >= 0"),
        (lambda: GradientReversal().set_lambd(float("nan")), r"GradientReversal.set_lambd .* nan"),
        (lambda: GradientReversal().set_progress(0.5), r"set_progress needs a schedule"),
        (lambda: GradientReversal(schedule=dann_lambda).set_progress(1.5), r"\[0, 1\]; got 1.5"),
        (lambda: GradientScale(float("inf")), r"`factor` of GradientScale must be finite"),
        (lambda: GradientScale(1.0).set_factor(float("nan")), r"GradientScale.set_factor"),
        (lambda: GradientClip(), r"GradientClip needs at least one of `min` and `max`"),
    ],
)
def test_errors(call, match):
    with pytest.raises(BackflipValueError, match=match):
        call()


def test_repr():
    assert repr(GradientReversal(0.5)) == "GradientReversal(lambd=0.5)"
    assert repr(GradientReversal(schedule=dann_lambda)) == (
        "GradientReversal(lambd=1, schedule=dann_lambda)"
    )
    assert repr(GradientScale(2)) == "GradientScale(factor=2)"
    assert repr(GradientClip(max=0.1)) == "GradientClip(min=None, max=0.1)"


def test_to_dtype_state_dict_deepcopy_pickle():
    grl = GradientReversal(0.5, schedule=dann_lambda)
    assert grl.to(torch.float64).lambd.dtype == torch.float64
    x = torch.ones(3, dtype=torch.float64)
    assert _grad(grl, x).dtype == torch.float64
    assert torch.allclose(_grad(grl, x), -0.5 * torch.tensor([1.0, -2.0, 3.0]).double())
    state = grl.state_dict()
    assert set(state) == {"lambd"}
    other = GradientReversal(1.0)
    other.load_state_dict(state)
    assert float(other.lambd) == 0.5
    for clone in (copy.deepcopy(grl), pickle.loads(pickle.dumps(grl))):
        assert float(clone.lambd) == 0.5 and clone.schedule is dann_lambda
        assert clone.lambd is not grl.lambd
        clone.set_progress(1.0)
        assert float(grl.lambd) == 0.5  # independent copies
    s = pickle.loads(pickle.dumps(GradientScale(-2.0)))
    assert float(s.factor) == -2.0 and "factor" in s.state_dict()
    c = copy.deepcopy(GradientClip(-1.0, 1.0))
    assert (c.min, c.max) == (-1.0, 1.0)
