"""The training loop: resume exactness, signals, atomic checkpoints, NaN stop, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import backflip.dann._prepare as prepare_mod
import backflip.dann._train as train_mod
from backflip import data
from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.dann import (
    TrainConfig,
    TrainingStopped,
    load_checkpoint,
    load_domain,
    load_model,
    save_checkpoint,
    train,
)


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_history_and_run_folder(tmp_path, tiny_config, moons_domains):
    s, t, tt = moons_domains
    res = train(tiny_config(out=str(tmp_path)), source=s, target=t, target_test=tt)
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert {"source_val_acc", "dev_risk", "target_entropy", "snd", "lambd", "loss_transfer"} <= set(
        res.history[0])
    assert (tmp_path / "config.json").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert set(res.selection) == {"source_val_acc", "dev_risk", "target_entropy", "snd"}
    model, cfg = load_model(tmp_path / "checkpoint.pt")
    assert cfg.method == "dann" and not model.training
    x = torch.as_tensor(tt.x)
    torch.testing.assert_close(model(x), res.model(x))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"target_vat": 1.0}], ids=["dann", "dann+vat"])
def test_resume_after_signal_is_exact(tmp_path, tiny_config, moons_domains, monkeypatch, extra):
    s, t, tt = moons_domains
    full = tmp_path / "full"
    train(tiny_config(out=str(full), **extra), source=s, target=t, target_test=tt)

    calls = []
    real = train_mod.dann_lambda

    def lambd_then_signal(p, *a):  # SIGTERM ourselves in the middle of epoch 2
        calls.append(p)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(p, *a)

    part = tmp_path / "part"
    monkeypatch.setattr(train_mod, "dann_lambda", lambd_then_signal)
    with pytest.raises(TrainingStopped, match=r"stopped by signal SIGTERM .*--resume") as info:
        train(tiny_config(out=str(part), **extra), source=s, target=t, target_test=tt)
    assert info.value.reason == "signal"
    assert [r["epoch"] for r in info.value.history] == [1]
    state = load_checkpoint(part / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 1)  # 6 steps per epoch; stopped after step 7
    monkeypatch.setattr(train_mod, "dann_lambda", real)
    # the checkpoint keeps the epoch's elapsed time, not a start on this process's clock:
    # resume as if on another machine, whose perf_counter is a day ahead
    assert "t0" not in state["acc"] and 0 <= state["acc"]["elapsed"] < 60
    clock = time.perf_counter
    monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(
        perf_counter=lambda: clock() + 86400.0))
    res = train(tiny_config(out=str(part), resume=True, **extra), source=s, target=t,
                target_test=tt)
    assert state["acc"]["elapsed"] <= res.history[1]["seconds"] < 60
    a, b = _weights(full / "checkpoint.pt"), _weights(part / "checkpoint.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path, tiny_config, moons_domains):
    s, t, tt = moons_domains
    train(tiny_config(out=str(tmp_path), epochs=1), source=s, target=t, target_test=tt)
    with pytest.raises(BackflipValueError, match=r"cannot resume .*different settings for \['lr'\]"):
        train(tiny_config(out=str(tmp_path), epochs=1, lr=0.5, resume=True), source=s, target=t,
              target_test=tt)


@pytest.mark.slow
def test_sigint_subprocess_saves_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "backflip", "train", "--source", "moons", "--target",
           "moons-rotated", "--epochs", "1000", "--batch-size", "32", "--threads", "1",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by signal SIGINT" in err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] >= 1 and state["step"] >= 1


def test_atomic_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"n": 1}, path)

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"n": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(BackflipValueError, match=r"corrupt or truncated .*Delete it and train"):
        load_model(bad)
    save_checkpoint({"n": 1}, tmp_path / "ok.pt")
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:40])
    with pytest.raises(BackflipValueError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(BackflipValueError, match=r"not a backflip DANN checkpoint \(format None"):
        load_model(foreign)
    with pytest.raises(BackflipValueError, match="no checkpoint at"):
        load_model(tmp_path / "missing.pt")


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_config, moons_domains,
                                                       monkeypatch):
    s, t, tt = moons_domains
    monkeypatch.setattr(train_mod, "dann_learning_rate",
                        lambda p, lr0: 1e30 if p >= 0.5 else lr0)
    with pytest.raises(TrainingStopped, match=r"the loss became (nan|inf) at epoch 2.*"
                       r"last good checkpoint is kept.*Lower --lr") as info:
        train(tiny_config(out=str(tmp_path), optimizer="sgd"), source=s, target=t,
              target_test=tt)
    assert info.value.reason == "nan"
    assert [r["epoch"] for r in info.value.history] == [1]  # epoch 1 finished, 2 did not
    assert info.value.history == [json.loads(line) for line in
                                  (tmp_path / "metrics.jsonl").read_text().splitlines()]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def _dies_after(monkeypatch, p_dead: float):
    # Fault injection: from progress p_dead on, the label head outputs constant logits
    # (what a DANN collapse looks like: features that no longer separate the classes).
    real_build, real_lr, dead = prepare_mod.build_model, train_mod.dann_learning_rate, {"on": False}

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.classifier.register_forward_hook(
            lambda mod, inp, out: out * 0.0 if dead["on"] else out)
        return model

    def lr(p, lr0):
        dead["on"] = p >= p_dead
        return real_lr(p, lr0)

    monkeypatch.setattr(prepare_mod, "build_model", build)
    monkeypatch.setattr(train_mod, "dann_learning_rate", lr)


@pytest.mark.slow
def test_collapse_stops_with_a_message_and_keeps_last_good_checkpoint(
        tmp_path, tiny_config, moons_domains, monkeypatch):
    s, t, tt = moons_domains
    _dies_after(monkeypatch, 0.75)  # the 4th of 4 epochs
    with pytest.raises(TrainingStopped, match=r"training collapsed in epoch 4: the label head's "
                       r"training accuracy fell to 0\.[45]\d\d \(chance 0\.500\) after reaching "
                       r"0\.[89]\d\d.*last good checkpoint is kept.*--arch mnist-bn") as info:
        train(tiny_config(out=str(tmp_path), epochs=4, optimizer="sgd", lr=0.05), source=s,
              target=t, target_test=tt)
    assert info.value.reason == "collapse"
    assert [r["epoch"] for r in info.value.history] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3  # never the collapsed one
    logged = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 4  # the collapsed epoch is logged for the user to see


@pytest.mark.slow
def test_no_collapse_without_the_fault(tmp_path, tiny_config, moons_domains):
    s, t, tt = moons_domains
    res = train(tiny_config(epochs=4, optimizer="sgd", lr=0.05), source=s, target=t,
                target_test=tt)
    assert len(res.history) == 4 and max(r["train_acc"] for r in res.history) >= 0.75


# -- bad input, each before any training starts -------------------------------------------


def _kw(domains):
    return dict(zip(("source", "target", "target_test"), domains, strict=True))


def _ds(x, y, name="d", classes=2):
    return data.ArrayDataset(np.asarray(x, np.float32), np.asarray(y, np.int64), classes, name)


@pytest.mark.slow
def test_unknown_dataset_lists_valid(tiny_config):
    with pytest.raises(BackflipValueError, match=r"'nope'.*moons"):
        train(tiny_config(source="nope"))


def test_unknown_method_and_key():
    with pytest.raises(BackflipValueError, match=r"unknown method 'gan'; choose one of source-only"):
        TrainConfig(method="gan")
    with pytest.raises(BackflipValueError, match=r"unknown TrainConfig key\(s\) \['lrr'\]"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(BackflipValueError,
                       match=r"unknown source_transform 'gray': step 'gray' .* spelled 'grey'"):
        TrainConfig(source_transform="gray")
    with pytest.raises(BackflipValueError, match=r"target_transform 'rgb\+resize0': step "
                                                 r"'resize0' is not one of rgb, grey, resizeN"):
        TrainConfig(target_transform="rgb+resize0")
    assert TrainConfig(source_transform="grey+resize64").source_transform == "grey+resize64"
    with pytest.raises(BackflipValueError, match="resume needs the run folder"):
        TrainConfig(resume=True)


@pytest.mark.slow
def test_unknown_data_set_leaves_no_run_folder(tmp_path, tiny_config):
    with pytest.raises(BackflipValueError, match=r"unknown data set 'moonz'.*'moons'"):
        train(tiny_config(source="moonz", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("device", "match"), [
    ("cudaa", r"unknown device 'cudaa' \(.*\)\. Pass device='cpu', 'cuda', 'cuda:N' or 'mps' "
              r"\(CLI: --device\)\."),
    pytest.param("cuda", r"device 'cuda': this PyTorch .* has no CUDA device\. Pass "
                 r"device='cpu' \(CLI: --device cpu\)",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
])
def test_bad_device_fails_before_any_work(tmp_path, tiny_config, device, match):
    with pytest.raises(BackflipValueError, match=match):
        train(tiny_config(device=device, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_unwritable_out(tmp_path, tiny_config, moons_domains):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackflipValueError, match=r"output folder .*file/run.* is not writable"):
        train(tiny_config(out=str(blocker / "run")), **_kw(moons_domains))


@pytest.mark.slow
def test_empty_target(tiny_config, moons_domains):
    s, _, tt = moons_domains
    with pytest.raises(BackflipValueError, match=r"target data set .* is empty"):
        train(tiny_config(), source=s, target=_ds(np.zeros((0, 2)), np.zeros(0)), target_test=tt)


@pytest.mark.slow
def test_labels_out_of_range(tiny_config, moons_domains):
    _, t, tt = moons_domains
    with pytest.raises(BackflipValueError, match=r"must lie in \[0, 2\); got 5"):
        train(tiny_config(), source=_ds(np.zeros((50, 2)), np.full(50, 5)), target=t,
              target_test=tt)


@pytest.mark.slow
def test_shape_mismatch_names_transform(tiny_config, images):
    s = _ds(images(40, 1), np.zeros(40), "grey", 10)
    t = _ds(images(40, 3), np.zeros(40), "colour", 10)
    with pytest.raises(BackflipValueError, match=r"different channels.*--source-transform rgb"):
        train(tiny_config(), source=s, target=t, target_test=t)


@pytest.mark.slow
def test_batch_larger_than_data(tiny_config, moons_domains):
    with pytest.raises(BackflipValueError, match=r"batch_size 500 is larger than the source"):
        train(tiny_config(batch_size=500), **_kw(moons_domains))


@pytest.mark.slow
def test_tensorboard_missing_is_clear(tiny_config, moons_domains, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(BackflipValueError, match="--tensorboard needs the tensorboard package"):
        train(tiny_config(tensorboard=True), **_kw(moons_domains))


def test_plain_values_only():
    import argparse

    ns = argparse.Namespace(**{**TrainConfig().to_dict(), "lr": [1]})
    from backflip.dann import config_from_args

    with pytest.raises(BackflipTypeError, match="lr must be a plain value"):
        config_from_args(ns)


@pytest.mark.slow
def test_fake_mnist_to_mnistm_and_load_domain(tmp_path, fake_mnist_root):
    cfg = TrainConfig(source="mnist", target="mnistm", source_transform="rgb", epochs=1,
                      batch_size=32, limit=64, progress=False, threads=1, eval_limit=64,
                      data_root=str(fake_mnist_root), out=str(tmp_path))
    res = train(cfg)
    model, back = load_model(Path(tmp_path) / "checkpoint.pt")
    test = load_domain(back, "target", "test")  # the fake MNIST-M test split, scored
    with torch.no_grad():
        pred = model(torch.as_tensor(test.x[:64])).argmax(1).numpy()
    assert res.target_accuracy == pytest.approx(float((pred == test.y[:64]).mean()))
    src = load_domain(back, "source", "test")
    assert src.x.shape == (60, 3, 28, 28)  # the fake MNIST test split, made RGB as in training
    assert model(torch.as_tensor(src.x[:5])).shape == (5, 10)


@pytest.mark.slow
def test_no_selection_criterion_reads_target_labels(tiny_config, moons_domains):
    s, t, tt = moons_domains
    rng = np.random.default_rng(0)
    shuffled = lambda d: data.ArrayDataset(d.x, rng.permutation(d.y), d.num_classes, d.name)  # noqa: E731
    base = train(tiny_config(), source=s, target=t, target_test=tt)
    other = train(tiny_config(), source=s, target=shuffled(t), target_test=shuffled(tt))
    crit = ("source_val_acc", "dev_risk", "target_entropy", "snd")
    for a, b in zip(base.history, other.history, strict=True):
        assert [a[c] for c in crit] == [b[c] for c in crit]
    assert {k: v["epoch"] for k, v in base.selection.items()} == {
        k: v["epoch"] for k, v in other.selection.items()}
    # only the reported accuracy changes with the target test labels
    assert [r["target_acc"] for r in base.history] != [r["target_acc"] for r in other.history]


@pytest.mark.slow
def test_signal_without_out_says_no_checkpoint_was_written(tiny_config, moons_domains,
                                                           monkeypatch):
    real = train_mod.dann_lambda
    calls = []

    def lambd_then_signal(p, *a):
        calls.append(p)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(p, *a)

    monkeypatch.setattr(train_mod, "dann_lambda", lambd_then_signal)
    with pytest.raises(TrainingStopped, match=r"SIGINT at epoch 1, step 3; no checkpoint "
                       r"written \(no --out folder was given\)\.$") as info:
        train(tiny_config(), **_kw(moons_domains))
    assert info.value.checkpoint is None


@pytest.mark.slow
def test_compile_trains_like_eager_and_compiles_once(tiny_config, moons_domains, monkeypatch):
    # aot_eager instead of inductor keeps the test quick; the trainer's own compile call,
    # λ changing every step (a 0-d buffer) and the VAT passes beside the compiled model.
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("aot_eager")
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real(m, backend=cnt, **kw))
    cfg = {"epochs": 2, "target_vat": 1.0}
    eager = train(tiny_config(**cfg), **_kw(moons_domains))
    comp = train(tiny_config(**cfg, compile=True), **_kw(moons_domains))
    assert cnt.frame_count == 1  # 12 steps, 12 values of λ: one graph
    x = torch.as_tensor(moons_domains[2].x)
    torch.testing.assert_close(comp.model(x), eager.model(x), rtol=1e-4, atol=1e-5)
    assert [r["lambd"] for r in comp.history] == [r["lambd"] for r in eager.history]


@pytest.mark.slow
def test_amp_bf16_on_cpu_trains_in_bf16(tiny_config, moons_domains, monkeypatch):
    # The built-in network's training forwards run in bf16 under amp (and only then).
    real_build, seen = prepare_mod.build_model, set()

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.features[1].register_forward_hook(
            lambda m, i, o: seen.add(o.dtype) if m.training and torch.is_grad_enabled() else None)
        return model

    monkeypatch.setattr(prepare_mod, "build_model", build)
    res = train(tiny_config(amp=True, epochs=1), **_kw(moons_domains))
    row = res.history[0]
    assert np.isfinite(row["loss"]) and row["loss_transfer"] > 0
    assert seen == {torch.bfloat16}


@pytest.mark.slow
def test_epoch_metrics_match_the_model_and_sync_rarely(tiny_config, moons_domains, monkeypatch):
    # lr 1e-12 leaves the weights as they start, and with no validation split each epoch is
    # one permutation of the 120 source and 120 target samples: the epoch's logged sums
    # must equal the model's loss and accuracy over the whole sets.
    s, t, tt = moons_domains
    calls = {"item": 0}
    item = torch.Tensor.item

    def counting_item(self):
        calls["item"] += 1
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    cfg = tiny_config(epochs=1, optimizer="sgd", lr=1e-12, lr_schedule="constant",
                      val_fraction=0.0)
    res = train(cfg, source=s, target=t, target_test=tt)
    assert calls["item"] == 0  # metrics stay on the device between folds
    row, model = res.history[0], res.model.eval()
    with torch.no_grad():
        xs, xt = torch.as_tensor(s.x), torch.as_tensor(t.x)
        logits, dom = model(torch.cat([xs, xt]), with_domain=True)
        ys = torch.as_tensor(s.y)
        loss_y = torch.nn.functional.cross_entropy(logits[:120], ys).item()
        dom_y = torch.cat([torch.zeros(120), torch.ones(120)])
        loss_d = torch.nn.functional.binary_cross_entropy_with_logits(dom, dom_y).item()
        train_acc = (logits[:120].argmax(1) == ys).sum().item() / 120
        domain_acc = ((dom > 0).float() == dom_y).sum().item() / 240
    assert row["loss_y"] == pytest.approx(loss_y, rel=1e-5)
    assert row["loss_transfer"] == pytest.approx(loss_d, rel=1e-5)
    assert row["loss"] == pytest.approx(loss_y + loss_d, rel=1e-5)
    assert row["train_acc"] == pytest.approx(train_acc, abs=1e-9)
    assert row["domain_acc"] == pytest.approx(domain_acc, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mnist", "mnist-bn"])
def test_channels_last_is_the_same_training(tmp_path, fake_mnist_root, arch):
    # NHWC is a memory order, not a model change: both runs see the same batches and end
    # at the same weights up to float rounding; the checkpoint loads into a plain model.
    kw = dict(source="mnist", target="mnistm", source_transform="rgb", arch=arch, epochs=1,
              batch_size=16, limit=64, progress=False, threads=1, eval_limit=64,
              val_fraction=0.0, data_root=str(fake_mnist_root), min_epoch_steps=1)
    nhwc = train(TrainConfig(**kw, out=str(tmp_path / "nhwc")))
    nchw = train(TrainConfig(**kw, channels_last=False))
    conv = nhwc.model.features[1].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert nchw.model.features[1].weight.is_contiguous()
    a, b = nhwc.model.state_dict(), nchw.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    model, _ = load_model(tmp_path / "nhwc" / "checkpoint.pt")
    x = torch.as_tensor(load_domain(TrainConfig(**kw), "target").x[:8])
    torch.testing.assert_close(model.eval()(x), nhwc.model.eval()(x), rtol=1e-4, atol=1e-5)


def test_no_channels_last_flag():
    import argparse

    from backflip.dann import config_from_args
    from backflip.dann._config import add_config_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args([])).channels_last is True
    assert config_from_args(parser.parse_args(["--no-channels-last"])).channels_last is False


@pytest.mark.slow
def test_target_entropy_adds_the_mean_entropy_of_the_target_predictions(tiny_config,
                                                                       moons_domains):
    s, t, tt = moons_domains
    plain = train(tiny_config(), source=s, target=t, target_test=tt)
    ent = train(tiny_config(target_entropy=0.5), source=s, target=t, target_test=tt)
    for row in plain.history:
        assert row["loss"] == pytest.approx(row["loss_y"] + row["loss_transfer"], rel=1e-5)
    for row in ent.history:  # the epoch's mean entropy of 2-class predictions: (0, ln 2]
        assert 0.0 < (row["loss"] - row["loss_y"] - row["loss_transfer"]) / 0.5 <= np.log(2) + 1e-6
        assert row["loss_ent"] == pytest.approx((row["loss"] - row["loss_y"] - row["loss_transfer"])
                                                / 0.5, rel=1e-5)
    # and it is minimised: the target predictions end more confident
    assert ent.history[-1]["target_entropy"] < plain.history[-1]["target_entropy"]


@pytest.mark.slow
def test_target_vat_adds_a_positive_term_and_draws_from_its_own_generator(tiny_config,
                                                                         moons_domains):
    s, t, tt = moons_domains
    plain = train(tiny_config(), source=s, target=t, target_test=tt)
    after_plain = torch.get_rng_state()
    vat = train(tiny_config(target_vat=2.0), source=s, target=t, target_test=tt)
    # the VAT directions come from (seed, step), not the global RNG, which ends where
    # the plain run's does: a resumed or distributed run draws the same directions
    assert torch.equal(torch.get_rng_state(), after_plain)
    for row in vat.history:  # the epoch's mean KL divergence: positive, small, weighted in
        assert 0.0 < row["loss_vat"] < 0.5 and row["loss_ent"] is None
        assert row["loss"] == pytest.approx(row["loss_y"] + row["loss_transfer"] + 2.0 * row["loss_vat"])
    assert plain.history[-1]["loss_vat"] is None
    again = train(tiny_config(target_vat=2.0), source=s, target=t, target_test=tt)
    x = torch.as_tensor(tt.x)
    torch.testing.assert_close(vat.model(x), again.model(x), rtol=0, atol=0)
    assert not torch.allclose(vat.model(x), plain.model(x))


@pytest.mark.parametrize(("kw", "match"), [
    ({"target_vat": -1.0}, r"target_vat must be finite and >= 0; got -1.0\. Use 0"),
    ({"vat_eps": 0.0}, r"vat_eps must be finite and > 0; got 0.0\. It is a length in input"),
    ({"vat_eps": float("inf")}, r"vat_eps must be finite and > 0; got inf"),
    ({"target_vat": 1.0, "method": "target-only"},
     r"target_vat 1.0 uses unlabelled target data, which method 'target-only' does not see"),
])
def test_target_vat_rejects_bad_settings(tiny_config, kw, match):
    with pytest.raises(BackflipValueError, match=match):
        tiny_config(**kw)


@pytest.mark.parametrize(("kw", "match"), [
    ({"target_entropy": -0.1}, r"target_entropy must be finite and >= 0; got -0.1\. Use 0"),
    ({"target_entropy": float("nan")}, r"target_entropy must be finite and >= 0; got nan"),
    ({"target_entropy": 0.1, "method": "source-only"},
     r"method 'source-only' does not see; use a method that adapts \(e.g. --method dann"),
])
def test_target_entropy_rejects_bad_weights_and_methods(tiny_config, kw, match):
    with pytest.raises(BackflipValueError, match=match):
        tiny_config(**kw)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("lr", -0.1, r"lr must be finite and > 0; got -0.1\. The paper's lr0 is 0.01"),
    ("lr", 0.0, r"lr must be finite and > 0; got 0.0"),
    ("lr", float("inf"), r"lr must be finite and > 0; got inf"),
    ("momentum", 1.0, r"momentum must be finite and >= 0 and < 1; got 1.0"),
    ("weight_decay", -1e-4, r"weight_decay must be finite and >= 0; got -0.0001"),
    ("lambd_max", float("nan"), r"lambd_max must be finite and >= 0; got nan\. The reversal"),
    ("lambd_max", -1.0, r"lambd_max must be finite and >= 0; got -1.0"),
    ("gamma", 0.0, r"gamma must be finite and > 0; got 0.0\. .*--lambd-max 0"),
    ("epochs", 0, r"epochs must be >= 1; got 0\.$"),
    ("limit", 0, r"limit must be >= 1; got 0\. Leave it out"),
    ("checkpoint_every", 0, r"checkpoint_every must be >= 1; got 0"),
    ("eval_limit", 0, r"eval_limit must be >= 1; got 0"),
    ("threads", 0, r"threads must be >= 1; got 0"),
    ("seed", -1, r"seed must be >= 0; got -1"),
])
def test_bad_numbers_fail_when_the_config_is_made(field, value, match):
    # before: NaN/negative λ failed only at the first step, momentum 1 and a negative
    # weight decay trained (and diverged) silently, checkpoint_every 0 crashed after epoch 1
    with pytest.raises(BackflipValueError, match=match):
        TrainConfig(source="moons", target="moons-rotated", **{field: value})


def test_a_number_field_given_text_is_a_type_error():
    with pytest.raises(BackflipTypeError, match=r"lr must be a number; got '0.1' of type str"):
        TrainConfig(source="moons", target="moons-rotated", lr="0.1")


def test_cli_flags_come_from_the_fields_metadata_not_the_source_text(monkeypatch):
    # where the source is not shipped (a zipapp, a frozen build), --help still has the help
    import argparse
    import dataclasses
    import inspect

    from backflip.dann._config import add_config_arguments

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"] and helps[f.name].startswith(f.metadata["help"]), f.name
    assert helps["lr"] == "lr0 of the paper's annealing lr0 / (1 + 10 p) ** 0.75 (default: 0.01)"
