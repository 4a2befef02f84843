"""vat_loss: the adversarial direction, frozen batch statistics, float32 under autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backflip.dann import DomainBatchNorm, vat_loss


def _kl(model, x, r):
    p = model(x).softmax(1)
    return F.kl_div(model(x + r).log_softmax(1), p, reduction="batchmean")


def test_finds_the_direction_that_changes_the_prediction_most():
    # Two classes, linear logits: the prediction moves only along w, so the adversarial
    # perturbation of radius eps is +-eps w/|w| (the sign follows the random start), and
    # a perturbation orthogonal to w changes nothing.
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    w = model.weight[1] - model.weight[0]
    along = (0.5 * w / w.norm()).detach().view(1, 2)
    across = torch.stack([-along[0, 1], along[0, 0]]).view(1, 2)
    for _ in range(10):
        x = torch.randn(1, 2)
        got = vat_loss(model, x, torch.randn(1, 2), eps=0.5).item()
        plus, minus = _kl(model, x, along).item(), _kl(model, x, -along).item()
        assert min(abs(got - plus), abs(got - minus)) <= 1e-4 * max(plus, minus)
        assert got > 100 * _kl(model, x, across).item()


def test_is_zero_where_the_prediction_ignores_the_input_and_trains_the_model():
    model = nn.Linear(3, 4)
    with torch.no_grad():
        model.weight.zero_()
    x = torch.randn(8, 3)
    assert vat_loss(model, x, torch.randn(8, 3), eps=1.0).item() == pytest.approx(0.0, abs=1e-7)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 4))
    loss = vat_loss(model, x, torch.randn(8, 3), eps=1.0)
    loss.backward()
    assert loss.item() > 0 and model[0].weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("norm", [nn.BatchNorm1d(16), DomainBatchNorm(16),
                                  nn.InstanceNorm1d(16, track_running_stats=True)],
                         ids=["batch", "domain", "instance"])
def test_leaves_running_statistics_as_they_were(norm):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 16 * 4), nn.Unflatten(1, (16, 4)), norm, nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 4, 2)).train()
    x = torch.randn(32, 3) * 3 + 1
    step_loss = model(x).logsumexp(1).mean()  # the step's own forward moves the statistics
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_b" in k}
    (step_loss + vat_loss(model, x, torch.randn(32, 3), eps=1.0)).backward()  # one backward
    after = model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert norm.track_running_stats  # restored, with the buffers
    assert all(getattr(norm, k) is not None for k in ("running_mean", "running_var"))
    assert model[0].weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_an_eval_mode_norm_keeps_reading_its_running_statistics():
    torch.manual_seed(5)
    norm = nn.BatchNorm1d(8)
    with torch.no_grad():
        norm.running_mean.fill_(3.0)
    model = nn.Sequential(nn.Linear(3, 8), norm, nn.Tanh(), nn.Linear(8, 2))
    x, noise = torch.randn(16, 3), torch.randn(16, 3)
    model.eval()
    frozen = vat_loss(model, x, noise, eps=0.5)
    norm.train()  # the same network with batch statistics gives another value
    assert not torch.allclose(frozen, vat_loss(model, x, noise, eps=0.5))
    assert torch.all(norm.running_mean == 3.0)  # and those passes updated nothing


@pytest.mark.slow
def test_dropout_is_off_in_its_passes_and_the_global_rng_untouched():
    # With a vanishing radius the term is 0 for a deterministic network; dropout masks
    # drawn afresh in each pass would make it the masks' difference instead.
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 4)).train()
    x, noise = torch.randn(32, 3), torch.randn(32, 3)
    state = torch.get_rng_state()
    # float32 rounding leaves ~5e-9 on some CPUs; fresh masks in each pass give ~3e-2
    assert vat_loss(model, x, noise, eps=1e-6).item() < 1e-6
    assert torch.equal(torch.get_rng_state(), state)
    assert model[2].training  # restored


def test_runs_in_float32_under_bf16_autocast():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    x, noise = torch.randn(16, 4), torch.randn(16, 4)
    plain = vat_loss(model, x, noise, eps=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16  # autocast is on in this block
        amp = vat_loss(model, x, noise, eps=0.5)
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, plain, rtol=0, atol=0)
