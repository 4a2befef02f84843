"""train(model=...): the user's own network trains, resumes exactly, reloads, and is checked."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

import backflip.dann._train as train_mod
from backflip._errors import BackflipValueError
from backflip.dann import DANN, DomainBatchNorm, TrainingStopped, load_model, train
from backflip.torch import GradientReversal


def _net(kind: str = "plain", d: int = 2, k: int = 2, seed: int = 0) -> DANN:
    torch.manual_seed(seed)
    norm = {"plain": nn.Identity(), "batchnorm": nn.BatchNorm1d(16),
            "dropout": nn.Dropout(0.2), "domain-bn": DomainBatchNorm(16)}[kind]
    features = nn.Sequential(nn.Linear(d, 16), norm, nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    return DANN(features, nn.Linear(16, k), nn.Sequential(nn.Linear(16, 8), nn.ReLU(),
                                                           nn.Linear(8, 1)))


def _kw(domains):
    s, t, tt = domains
    return {"source": s, "target": t, "target_test": tt}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "batchnorm", "dropout", "domain-bn"])
def test_a_user_model_trains_and_is_the_model_returned(tmp_path, tiny_config, moons_domains,
                                                      kind):
    net = _net(kind)
    before = {k: v.clone() for k, v in net.state_dict().items() if torch.is_tensor(v)}
    res = train(tiny_config(out=str(tmp_path)), model=net, **_kw(moons_domains))
    assert res.model is net  # the user's own instance, trained in place
    assert any(not torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert res.history[-1]["domain_acc"] is not None and res.history[-1]["target_acc"] > 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["network"]["arch"] == "user"
    assert cfg["network"]["class"] == "backflip.dann._models.DANN"
    # the user's model has no Standardize: said, not silently done or skipped
    assert any("does not have" in note for note in res.notes)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["batchnorm", "dropout"])
def test_a_user_model_resumes_exactly_and_reloads_into_a_fresh_instance(
        tmp_path, tiny_config, moons_domains, monkeypatch, kind):
    full = train(tiny_config(out=str(tmp_path / "full")), model=_net(kind),
                 **_kw(moons_domains))
    calls, real = [], train_mod.dann_lambda

    def lambd_then_signal(p, *a):  # SIGTERM ourselves in the middle of epoch 2
        calls.append(p)
        if len(calls) == 8:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(p, *a)

    monkeypatch.setattr(train_mod, "dann_lambda", lambd_then_signal)
    with pytest.raises(TrainingStopped, match="stopped by signal SIGTERM"):
        train(tiny_config(out=str(tmp_path / "part")), model=_net(kind), **_kw(moons_domains))
    monkeypatch.setattr(train_mod, "dann_lambda", real)
    resumed = train(tiny_config(out=str(tmp_path / "part"), resume=True),
                    model=_net(kind, seed=99), **_kw(moons_domains))
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    # reload into the user's own (fresh) instance
    fresh, config = load_model(tmp_path / "part" / "checkpoint.pt", model=_net(kind, seed=5))
    x = torch.as_tensor(moons_domains[2].x)
    torch.testing.assert_close(fresh(x), full.model.eval()(x), rtol=0, atol=0)
    assert not fresh.training and config.resume


@pytest.mark.slow
def test_reloading_needs_a_model_that_fits(tmp_path, tiny_config, moons_domains):
    train(tiny_config(out=str(tmp_path), epochs=1), model=_net(), **_kw(moons_domains))
    with pytest.raises(BackflipValueError, match=r"holds your own network \(class "
                       r"backflip\.dann\._models\.DANN\).*load_model\(path, model=my_model\) "
                       r"\(CLI: --model MODULE:FUNCTION\)"):
        load_model(tmp_path / "checkpoint.pt")
    with pytest.raises(BackflipValueError, match=r"does not fit the model passed.*other shapes: "
                       r"classifier\.bias: \(2,\) saved, \(3,\) here; classifier\.weight"):
        load_model(tmp_path / "checkpoint.pt", model=_net(k=3))
    with pytest.raises(BackflipValueError, match=r"missing from the checkpoint: features\.1\."):
        load_model(tmp_path / "checkpoint.pt", model=_net("batchnorm"))


@pytest.mark.slow
def test_resuming_with_another_model_class_is_refused(tmp_path, tiny_config, moons_domains):
    class Other(DANN):
        pass

    train(tiny_config(out=str(tmp_path), epochs=1), model=_net(), **_kw(moons_domains))
    net = _net()
    other = Other(net.features, net.classifier, net.discriminator)
    with pytest.raises(BackflipValueError, match=r"cannot resume .*model class"):
        train(tiny_config(out=str(tmp_path), epochs=2, resume=True), model=other,
              **_kw(moons_domains))


class _Parts(nn.Module):
    # A hand-written model with the DANN parts, to break one piece of the contract at a time.
    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault
        self.features = nn.Sequential(nn.Linear(2, 8), nn.ReLU())
        self.classifier = nn.Linear(8, 3 if fault == "width" else 2)
        self.discriminator = nn.Linear(8, 1)
        self.grl = GradientReversal(1.0)
        if fault == "no-reversal":  # scales the gradient by +λ instead of -λ
            self.grl = _Scale()

    def forward(self, x, with_domain=False):
        f = self.features(x)
        if self.fault == "tuple":
            return self.classifier(f), f
        if not with_domain:
            return self.classifier(f)
        if self.fault == "bypass":
            return self.classifier(f), self.discriminator(f).reshape(-1)
        if self.fault == "detached":
            return self.classifier(f), self.discriminator(self.grl(f)).detach().reshape(-1)
        if self.fault == "features-detached":
            return self.classifier(f), self.discriminator(self.grl(f.detach())).reshape(-1)
        return self.classifier(f), self.discriminator(self.grl(f)).reshape(-1)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("lambd", torch.tensor(1.0))

    def set_lambd(self, value):
        self.lambd.fill_(float(value))

    def forward(self, x):
        from backflip.torch import scale_gradient

        return scale_gradient(x, self.lambd)


class _NoForwardFlag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features, self.classifier = nn.Linear(2, 4), nn.Linear(4, 2)
        self.grl = GradientReversal()

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.slow
@pytest.mark.parametrize(("model", "match"), [
    (nn.Linear(2, 2), r"it has no `features` module \(Linear\.features\)"),
    (_Parts("width"), r"its class logits have 3 columns but the data has 2 classes"),
    (_Parts("tuple"), r"model\(x\) must return the class logits as one tensor"),
    (_NoForwardFlag(), r"model\(x, with_domain=True\) failed"),
    (_Parts("bypass"), r"the domain loss reaches the features even at λ = 0"),
    (_Parts("detached"), r"the domain head gets no gradient"),
    (_Parts("features-detached"), r"the features get no gradient from the domain head"),
    (_Parts("no-reversal"), r"model\.grl does not reverse the gradient"),
], ids=["no-features", "width", "tuple", "no-with-domain", "bypass", "detached-head",
        "detached-features", "no-reversal"])
def test_a_model_that_breaks_the_contract_fails_before_the_first_step(
        tmp_path, tiny_config, moons_domains, model, match):
    with pytest.raises(BackflipValueError, match=match):
        train(tiny_config(out=str(tmp_path / "run")), model=model, **_kw(moons_domains))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_the_contract_check_does_not_change_the_run(tiny_config, moons_domains):
    # eval mode, no .grad and no running statistic touched: a user model trains exactly
    # as the same network built by the trainer (same seed, same initial weights)
    from backflip.dann import build_model

    torch.manual_seed(0)
    mine = build_model("moons", (2,), 2)  # the width the trainer picks (mlp_hidden)
    ours = train(tiny_config(arch="moons"), **_kw(moons_domains))
    res = train(tiny_config(normalize="none"), model=mine, **_kw(moons_domains))
    ref = train(tiny_config(arch="moons", normalize="none"), **_kw(moons_domains))
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v, rtol=0, atol=0)
    assert ours.history[-1]["loss"] != ref.history[-1]["loss"]  # normalize mattered there


@pytest.mark.slow
def test_amp_bf16_really_autocasts_a_user_model(tiny_config, moons_domains):
    seen = {}

    def run(amp):
        net = _net()
        dtypes = seen.setdefault(amp, set())
        net.features[0].register_forward_hook(
            lambda m, i, o: dtypes.add(o.dtype) if m.training and torch.is_grad_enabled() else None)
        res = train(tiny_config(amp=amp, epochs=1), model=net, **_kw(moons_domains))
        return res.history[0]

    row = run(True)
    assert np.isfinite(row["loss"]) and row["loss_transfer"] > 0
    assert seen[True] == {torch.bfloat16}  # fails if autocast were off
    run(False)
    assert seen[False] == {torch.float32}


@pytest.mark.slow
def test_a_user_model_compiles(tiny_config, moons_domains, monkeypatch):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("aot_eager")
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend=cnt, **kw))
    eager = train(tiny_config(), model=_net(), **_kw(moons_domains))
    comp = train(tiny_config(compile=True), model=_net(), **_kw(moons_domains))
    assert cnt.frame_count == 1
    x = torch.as_tensor(moons_domains[2].x)
    torch.testing.assert_close(comp.model(x), eager.model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_nan_from_a_user_model_stops_with_the_last_good_checkpoint(tmp_path, tiny_config,
                                                                     moons_domains):
    net, calls = _net(), []

    def poison(module, inputs, output):
        if module.training and torch.is_grad_enabled():
            calls.append(1)
            if len(calls) > 8:  # epoch 2
                return output * float("nan")
        return None

    net.classifier.register_forward_hook(poison)
    with pytest.raises(TrainingStopped, match=r"the loss became nan at epoch 2") as info:
        train(tiny_config(out=str(tmp_path)), model=net, **_kw(moons_domains))
    assert info.value.reason == "nan" and info.value.checkpoint == tmp_path / "checkpoint.pt"
    assert [r["epoch"] for r in info.value.history] == [1]


@pytest.mark.slow
def test_model_and_arch_or_factory_together_are_refused(tiny_config, moons_domains):
    with pytest.raises(BackflipValueError, match="leave it 'auto' when you pass your own"):
        train(tiny_config(arch="moons"), model=_net(), **_kw(moons_domains))
    with pytest.raises(BackflipValueError, match="pass one of them"):
        train(tiny_config(model="mynets:build"), model=_net(), **_kw(moons_domains))
