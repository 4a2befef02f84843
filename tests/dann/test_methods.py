"""The method family: each loss on literal tensors, the gradient it sends to the features
(sign and size), the heads a method adds, and a short run of each through train()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from backflip import BackflipValueError
from backflip.dann import DANN, TrainConfig, train
from backflip.dann._adapted import Adapted
from backflip.dann._alignment import (
    RandomizedMultilinearMap,
    coral_loss,
    entropy_weights,
    mcc_loss,
    mdd_disparity,
    multilinear_map,
    weighted_domain_loss,
)
from backflip.dann._config import METHODS
from backflip.dann._methods import Batch, get_method

# ---------------------------------------------------------------- the losses, literally


def test_multilinear_map_is_the_flattened_outer_product():
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    p = torch.tensor([[0.2, 0.8], [1.0, 0.0]])
    expected = torch.tensor([[0.2, 0.8, 0.4, 1.6, 0.6, 2.4], [0.0, 0.0, -1.0, 0.0, 0.5, 0.0]])
    assert torch.allclose(multilinear_map(f, p), expected)


def test_randomized_map_keeps_inner_products_in_expectation():
    # E[<T(f, p), T(f', p')>] = <f, f'> <p, p'>: with d = 40000 columns the sample mean
    # over the columns is within a few percent (its relative std is about 1 / sqrt(d)).
    f, f2 = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[0.5, 1.0, 1.0]])
    p, p2 = torch.tensor([[0.3, 0.7]]), torch.tensor([[0.6, 0.4]])
    m = RandomizedMultilinearMap(3, 2, dim=40000, seed=3)
    got = float((m(f, p) * m(f2, p2)).sum())
    exact = float((f * f2).sum() * (p * p2).sum())  # = <f ⊗ p, f2 ⊗ p2>
    assert exact == pytest.approx(float((multilinear_map(f, p) * multilinear_map(f2, p2)).sum()))
    assert got == pytest.approx(exact, rel=0.05)
    assert m(f, p).shape == (1, 40000)


def test_randomized_map_is_fixed_by_its_seed_and_saved_untrained():
    a, b = RandomizedMultilinearMap(4, 3, 8, seed=1), RandomizedMultilinearMap(4, 3, 8, seed=1)
    assert torch.equal(a.r_f, b.r_f) and not list(a.parameters())
    assert set(a.state_dict()) == {"r_f", "r_g"}


def test_entropy_weights_per_domain():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])
    w = entropy_weights(p, 2)
    raw_s = torch.tensor([2.0, 1.5])  # 1 + exp(-0), 1 + exp(-ln 2)
    assert torch.allclose(w[:2], raw_s * 2 / raw_s.sum())
    assert torch.allclose(w[2:], torch.ones(2))  # equal entropies: equal weights
    assert float(w[:2].sum()) == pytest.approx(2.0) and not w.requires_grad


def test_weighted_domain_loss_literal():
    d = torch.tensor([0.0, 0.0, 2.0])  # BCE: ln 2, ln 2 (source), ln(1 + e^-2) (target)
    ln2, t = math.log(2), math.log1p(math.exp(-2))
    assert float(weighted_domain_loss(d, 2)) == pytest.approx((2 * ln2 + t) / 3, rel=1e-6)
    w = torch.tensor([1.0, 3.0, 4.0])
    assert float(weighted_domain_loss(d, 2, w)) == pytest.approx((4 * ln2 + 4 * t) / 8, rel=1e-6)


def test_mdd_disparity_literal():
    z_s = torch.tensor([[3.0, 0.0]])          # main head predicts class 0 on the source
    adv_s = torch.tensor([[0.0, 0.0]])        # adversary uniform: CE = ln 2
    z_t = torch.tensor([[0.0, 1.0]])          # main head predicts class 1 on the target
    adv_t = torch.tensor([[math.log(3.0), 0.0]])  # adversary: p(class 1) = 1/4
    expected = 4.0 * math.log(2) - math.log(1 - 0.25 + 1e-6)
    assert float(mdd_disparity(z_s, adv_s, z_t, adv_t, margin=4.0)) == pytest.approx(expected,
                                                                                     rel=1e-6)
    # the paper's clamp: a certain agreement on the target costs -log(1e-6), not inf
    certain = float(mdd_disparity(z_s, adv_s, z_t, torch.tensor([[-100.0, 100.0]]), 0.0))
    assert certain == pytest.approx(-math.log(1e-6), rel=1e-4)
    # and ours on the source: a certain disagreement costs -log(1e-6) and pushes no more
    adv = torch.tensor([[-100.0, 100.0]], requires_grad=True)
    far = mdd_disparity(z_s, adv, z_t, adv_t, margin=1.0)
    assert far.item() == pytest.approx(-math.log(1e-6) - math.log(0.75 + 1e-6), rel=1e-4)
    (g,) = torch.autograd.grad(far, adv)
    assert float(g.abs().max()) == 0.0


def test_mcc_loss_literal():
    # two samples, T = 1: p = [[0.75, 0.25], [0.25, 0.75]], equal entropies -> w = 1
    z = torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])
    m = torch.tensor([[0.75**2 + 0.25**2, 2 * 0.75 * 0.25], [2 * 0.75 * 0.25, 0.75**2 + 0.25**2]])
    m = m / m.sum(1, keepdim=True)
    expected = float((m.sum() - m.trace()) / 2)
    assert float(mcc_loss(z, temperature=1.0)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.375)
    # the temperature softens the predictions: more confusion
    assert float(mcc_loss(z, temperature=2.5)) > expected


def test_coral_loss_literal():
    xs = torch.tensor([[1.0, 2.0], [3.0, 0.0], [2.0, 1.0]])   # cov [[1, -1], [-1, 1]]
    xt = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])   # cov [[1, 0], [0, 0]]
    # ‖C_s - C_t‖² = 0 + 1 + 1 + 1 = 3; / (4 · 2²)
    assert float(coral_loss(xs, xt)) == pytest.approx(3 / 16)


# ------------------------------------------------- what each method sends to the features


def _net():
    torch.manual_seed(0)
    # features are the input itself, so the gradient at x is the gradient at the features
    return DANN(nn.Identity(), nn.Linear(3, 2), nn.Linear(3, 1))


def _batch():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 3, generator=g).requires_grad_(True)
    xt = (torch.randn(4, 3, generator=g) + 1.0).requires_grad_(True)
    return Batch(xs, torch.tensor([0, 1, 1, 0]), xt, None, step=0)


def _setup(name: str, lambd: float, **kw):
    model, method = _net(), get_method(name)
    cfg = TrainConfig(source="moons", target="moons-rotated", method=name, **kw)
    heads = method.heads(model, 3, 2, cfg)
    adapted = Adapted(method, model, heads, cfg, None)
    adapted.set_lambd(lambd)
    return adapted, method, heads, model


def _reference(name: str, heads, model, b: Batch, cfg_kw: dict) -> torch.Tensor:
    # The method's term computed WITHOUT the reversal (the head's own loss).
    f = torch.cat([b.xs, b.xt])
    z = model.classifier(f)
    n = len(b.xs)
    p = z.detach().softmax(1)
    if name in ("cdan", "cdan+e"):
        d = heads.discriminator(multilinear_map(f, p)).reshape(-1)
        w = entropy_weights(p, n) if name == "cdan+e" else None
        return weighted_domain_loss(d, n, w)
    if name == "mdd":
        adv = heads.adversary(f)
        return mdd_disparity(z[:n], adv[:n], z[n:], adv[n:], cfg_kw.get("margin", 4.0))
    if name == "mcc":
        return mcc_loss(z[n:], 2.5)
    if name == "coral":
        return coral_loss(f[:n], f[n:])
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["cdan", "cdan+e", "mdd"])
def test_adversarial_methods_reverse_their_term_at_the_features(name):
    # through the GRL: dL/df = -λ dT/df, while the method's head gets +dT/dθ
    adapted, method, heads, model = _setup(name, 0.5)
    b = _batch()
    t = method.terms(adapted, b)
    ref = _reference(name, heads, model, b, {})
    assert t.loss_transfer.item() == pytest.approx(ref.item(), rel=1e-5)
    head_params = list(heads.parameters())
    got = torch.autograd.grad(t.weighted_transfer, [b.xs, b.xt, *head_params])
    want = torch.autograd.grad(ref, [b.xs, b.xt, *head_params])
    for g, w in zip(got[:2], want[:2], strict=True):
        assert w.abs().max() > 1e-4
        assert torch.allclose(g, -0.5 * w, atol=1e-6)
    for g, w in zip(got[2:], want[2:], strict=True):
        assert torch.allclose(g, w, atol=1e-6)


@pytest.mark.parametrize("name", ["mcc", "coral"])
def test_weighted_methods_descend_their_term_at_the_features(name):
    # no GRL: dL/df = +λ dT/df (gradient descent lowers the confusion / covariance gap)
    adapted, method, heads, model = _setup(name, 0.25)
    assert heads is None
    b = _batch()
    t = method.terms(adapted, b)
    ref = _reference(name, heads, model, b, {})
    assert t.loss_transfer.item() == pytest.approx(ref.item(), rel=1e-5)
    got = torch.autograd.grad(t.weighted_transfer, [b.xs, b.xt])
    want = torch.autograd.grad(ref, [b.xs, b.xt])
    assert want[1].abs().max() > 1e-5  # mcc acts on the target only, coral on both
    assert (want[0].abs().max() > 1e-5) == (name == "coral")
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, 0.25 * w, atol=1e-7)


def test_cdan_switches_to_the_randomized_map_above_4096_columns():
    cfg = TrainConfig(source="moons", target="moons-rotated", method="cdan")
    cdan = get_method("cdan")
    small = cdan.heads(_net(), 64, 64, cfg)            # 4096 columns: multilinear
    big = cdan.heads(_net(), 768, 10, cfg)             # 7680 columns: randomized, 1024
    assert small.random_map is None and small.discriminator[0].in_features == 4096
    assert big.random_map.r_f.shape == (768, 1024) and big.discriminator[0].in_features == 1024


def test_mdd_adversary_copies_the_classifier_freshly_initialised():
    model = _net()
    cfg = TrainConfig(source="moons", target="moons-rotated", method="mdd")
    heads = get_method("mdd").heads(model, 3, 2, cfg)
    assert isinstance(heads.adversary, nn.Linear) and heads.adversary.out_features == 2
    assert heads.adversary is not model.classifier
    assert not torch.equal(heads.adversary.weight, model.classifier.weight)


def test_method_properties_and_unknown_names():
    assert get_method("target-only").needs_target_labels
    assert [m for m in METHODS if get_method(m).uses_grl] == ["dann", "cdan", "cdan+e", "mdd"]
    assert get_method("mdd").default_lambd_max == 0.1
    assert TrainConfig(method="coral").lambd_peak == 1.0
    with pytest.raises(BackflipValueError, match=r"unknown method 'cdan-e'; choose one of "
                                                 r"source-only, dann, cdan, cdan\+e, mdd"):
        TrainConfig(method="cdan-e")
    with pytest.raises(BackflipValueError, match=r"margin must be finite and > 0; got 0.0"):
        TrainConfig(method="mdd", margin=0.0)


def test_target_terms_combine_with_every_adapting_method():
    for name in METHODS:
        m = get_method(name)
        if m.uses_target and not m.needs_target_labels:
            TrainConfig(method=name, target_entropy=0.1, target_vat=0.5)
        else:
            with pytest.raises(BackflipValueError, match=f"method {name!r} does not see"):
                TrainConfig(method=name, target_entropy=0.1)


# ---------------------------------------------------------------- through train()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdan", "cdan+e", "mdd", "mcc", "coral"])
def test_each_new_method_trains_on_the_moons_and_logs_its_term(tiny_config, moons_domains,
                                                               name):
    s, t, tt = moons_domains
    res = train(tiny_config(method=name, epochs=2), source=s, target=t, target_test=tt)
    last = res.history[-1]
    assert np.isfinite(last["loss_transfer"]) and last["loss_transfer"] >= 0
    assert last["lambd"] == pytest.approx(TrainConfig(method=name).lambd_peak, rel=0.01)
    assert (last["domain_acc"] is not None) == name.startswith("cdan")
    assert last["train_acc"] > 0.7  # the label head learns the source moons


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdan", "mdd"])
def test_a_method_with_heads_resumes_exactly(tiny_config, moons_domains, tmp_path, name):
    s, t, tt = moons_domains
    whole = train(tiny_config(method=name, epochs=2, out=str(tmp_path / "a")),
                  source=s, target=t, target_test=tt)

    class Interrupted(Exception):
        pass

    def interrupt(row):  # on_epoch: end the run after its first epoch (checkpoint written)
        raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny_config(method=name, epochs=2, out=str(tmp_path / "b")), source=s, target=t,
              target_test=tt, on_epoch=interrupt)
    resumed = train(tiny_config(method=name, epochs=2, out=str(tmp_path / "b"), resume=True),
                    source=s, target=t, target_test=tt)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.history[-1]["loss"] == resumed.history[-1]["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdan+e", "mdd", "mcc"])
def test_a_users_own_model_trains_with_every_method(tiny_config, moons_domains, name):
    # the user's DANN over their own modules; the method brings its heads, sized from the
    # user's features (5 wide here) and classes; the user's discriminator goes unused
    class Head(nn.Module):  # not an nn.Sequential: MDD's adversary copies it as it is
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 2)

        def forward(self, h):
            return self.fc(torch.relu(h))

    torch.manual_seed(0)
    model = DANN(nn.Sequential(nn.Linear(2, 5), nn.Tanh()), Head(), nn.Linear(5, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s, t, tt = moons_domains
    res = train(tiny_config(method=name, epochs=2), model=model, source=s, target=t,
                target_test=tt)
    assert res.model is model and np.isfinite(res.history[-1]["loss_transfer"])
    after = model.state_dict()
    assert set(after) == set(before)  # the method's heads are not put into the user's model
    assert not torch.equal(after["classifier.fc.weight"], before["classifier.fc.weight"])
    assert torch.equal(after["discriminator.weight"], before["discriminator.weight"])
