"""The pure loss functions on literal tensors, and each method's objective on a fixed model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from backflip.dann import DANN, TrainConfig, domain_loss, entropy_loss, label_loss
from backflip.dann._adapted import Adapted
from backflip.dann._losses import domain_labels
from backflip.dann._methods import SUMS, Batch, get_method


def test_label_loss_is_the_mean_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (-math.log(math.e ** 2 / (math.e ** 2 + 1)) - math.log(math.e / (1 + math.e))) / 2
    assert float(label_loss(logits, torch.tensor([0, 1]))) == pytest.approx(expected)


def test_domain_loss_is_bce_with_source_0_and_target_1_and_counts_right_signs():
    d = torch.tensor([-1.0, 2.0, 0.5])  # source: -1 (right), 2 (wrong); target: 0.5 (right)
    loss, correct = domain_loss(d, n_source=2)
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731  softplus
    assert float(loss) == pytest.approx((sp(-1.0) + sp(2.0) + sp(-0.5)) / 3)
    assert float(correct) == 2.0
    assert domain_labels(2, 1).tolist() == [0.0, 0.0, 1.0]


def test_entropy_loss_literal_values():
    p = torch.tensor([0.25, 0.75])
    logits = p.log()[None].repeat(2, 1)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(entropy_loss(logits)) == pytest.approx(h)
    assert float(entropy_loss(torch.tensor([[50.0, -50.0]]))) == pytest.approx(0.0, abs=1e-12)


def test_losses_compute_in_float32_from_bf16_logits():
    logits = torch.tensor([[1.0, -1.0]], dtype=torch.bfloat16)
    for value in (label_loss(logits, torch.tensor([0])), entropy_loss(logits),
                  domain_loss(logits[0], 1)[0]):
        assert value.dtype == torch.float32


def _model():
    torch.manual_seed(0)
    f = nn.Linear(2, 3)
    return DANN(f, nn.Linear(3, 2), nn.Linear(3, 1))


def _batch():
    g = torch.Generator().manual_seed(1)
    xs, xt = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    return Batch(xs, torch.tensor([0, 1, 1, 0]), xt, torch.tensor([1, 1, 0, 0]), step=0)


def _adapted(model, cfg):
    return Adapted(get_method(cfg.method), model, None, cfg, lambda s, sh: None)


def _out(model, cfg, b):
    return _adapted(model, cfg)(b.xs, b.ys, b.xt, b.yt, 0)


@pytest.mark.parametrize("method", ["source-only", "dann", "target-only"])
def test_each_objective_is_its_loss_of_the_model(method):
    model, b = _model(), _batch()
    cfg = TrainConfig(source="moons", target="moons-rotated", method=method)
    out = _out(model, cfg, b)
    assert out["loss"].requires_grad
    sums = dict(zip(SUMS, out["sums"].tolist(), strict=True))
    with torch.no_grad():
        if method == "dann":
            logits, dom = model(torch.cat([b.xs, b.xt]), with_domain=True)
            ly = label_loss(logits[:4], b.ys)
            ld = domain_loss(dom, 4)[0]
            assert sums["loss_transfer"] == pytest.approx(float(ld) * 4)
            assert out["loss"].item() == pytest.approx(float(ly + ld))
        else:
            x, y = (b.xs, b.ys) if method == "source-only" else (b.xt, b.yt)
            ly = label_loss(model(x), y)
            assert out["loss"].item() == pytest.approx(float(ly))
            assert sums["loss_transfer"] == 0.0
        assert sums["loss_y"] == pytest.approx(float(ly) * 4)
    assert out["sums"].dtype == torch.float64
    assert sums["loss"] == pytest.approx(out["loss"].item() * 4)


def test_dann_objective_adds_weighted_entropy():
    model, b = _model(), _batch()
    cfg = TrainConfig(source="moons", target="moons-rotated", target_entropy=0.5)
    with torch.no_grad():
        out = _out(model, cfg, b)
        h = entropy_loss(model(b.xt))
        logits, dom = model(torch.cat([b.xs, b.xt]), with_domain=True)
        base = label_loss(logits[:4], b.ys) + domain_loss(dom, 4)[0]
    sums = dict(zip(SUMS, out["sums"].tolist(), strict=True))
    assert sums["loss_ent"] == pytest.approx(float(h) * 4)
    assert float(out["loss"]) == pytest.approx(float(base + 0.5 * h))
