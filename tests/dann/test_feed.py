"""Streamed data sets: the same batches, the same result and the same resume as in memory."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

import backflip.dann._train as train_mod
from backflip import data
from backflip._errors import BackflipTypeError
from backflip.dann import TrainingStopped, train
from backflip.dann._feed import Feed, as_domain, epoch_plan


class Samples(torch.utils.data.Dataset):
    """A map-style Dataset over arrays: what a user's on-disk data set looks like."""

    def __init__(self, ds, labelled=True):
        self.ds, self.labelled_ = ds, labelled
        self.num_classes = ds.num_classes
        self.reads = 0

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.reads += 1
        x = torch.from_numpy(self.ds.x[i])
        return (x, int(self.ds.y[i])) if self.labelled_ else x


def _weights(model):
    return {k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_dataset_gives_the_in_memory_result(tiny_config, moons_domains, workers):
    s, t, tt = moons_domains
    mem = train(tiny_config(target_vat=1.0), source=s, target=t, target_test=tt)
    streamed = train(tiny_config(target_vat=1.0, workers=workers), source=Samples(s),
                     target=Samples(t, labelled=False), target_test=Samples(tt))
    for k, v in _weights(mem.model).items():
        torch.testing.assert_close(_weights(streamed.model)[k], v, rtol=0, atol=0)
    assert [r["loss"] for r in streamed.history] == [r["loss"] for r in mem.history]
    assert [r["target_acc"] for r in streamed.history] == [r["target_acc"] for r in mem.history]


@pytest.mark.slow
def test_a_streamed_image_folder_gives_the_in_memory_result(tmp_path, tiny_config):
    from PIL import Image

    rng = np.random.default_rng(0)
    for domain, shift in (("s", 0), ("t", 40)):
        for c in range(2):
            (tmp_path / domain / f"c{c}").mkdir(parents=True)
            for i in range(30):
                px = (rng.integers(0, 100, (9, 9)) + 80 * c + shift).clip(0, 255)
                Image.fromarray(px.astype(np.uint8)).save(tmp_path / domain / f"c{c}" / f"{i}.png")
    folders = [data.ImageFolder(tmp_path / d) for d in ("s", "t")]
    cfg = tiny_config(batch_size=10, eval_limit=60)
    mem = train(cfg, source=folders[0].to_arrays(), target=folders[1].to_arrays(),
                target_test=folders[1].to_arrays())
    streamed = train(cfg, source=folders[0], target=folders[1], target_test=folders[1])
    for k, v in _weights(mem.model).items():
        torch.testing.assert_close(_weights(streamed.model)[k], v, rtol=0, atol=0)


def _dropout_net():
    from torch import nn

    from backflip.dann import DANN

    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3))
    return DANN(f, nn.Linear(16, 2), nn.Linear(16, 1))


@pytest.mark.slow
def test_a_streamed_run_with_dropout_equals_the_in_memory_run(tiny_config, moons_domains):
    # the DataLoader draws nothing from the global RNG: the dropout masks are the same
    s, t, tt = moons_domains
    mem = train(tiny_config(), model=_dropout_net(), source=s, target=t, target_test=tt)
    streamed = train(tiny_config(workers=1), model=_dropout_net(), source=Samples(s),
                     target=Samples(t, labelled=False), target_test=Samples(tt))
    for k, v in _weights(mem.model).items():
        torch.testing.assert_close(_weights(streamed.model)[k], v, rtol=0, atol=0)


@pytest.mark.slow
def test_a_streamed_run_resumes_exactly(tmp_path, tiny_config, moons_domains, monkeypatch):
    s, t, tt = moons_domains
    kw = {"source": Samples(s), "target": Samples(t, labelled=False), "target_test": Samples(tt)}
    full = train(tiny_config(out=str(tmp_path / "full")), model=_dropout_net(), **kw)
    calls, real = [], train_mod.dann_lambda

    def lambd_then_signal(p, *a):
        calls.append(p)
        if len(calls) == 9:
            os.kill(os.getpid(), signal.SIGINT)
        return real(p, *a)

    monkeypatch.setattr(train_mod, "dann_lambda", lambd_then_signal)
    with pytest.raises(TrainingStopped, match="SIGINT at epoch 2, step 3"):
        train(tiny_config(out=str(tmp_path / "part")), model=_dropout_net(), **kw)
    monkeypatch.setattr(train_mod, "dann_lambda", real)
    res = train(tiny_config(out=str(tmp_path / "part"), resume=True), model=_dropout_net(), **kw)
    for k, v in _weights(full.model).items():
        torch.testing.assert_close(_weights(res.model)[k], v, rtol=0, atol=0)


def test_streamed_batches_are_the_planned_samples_of_this_shard():
    # one run-long loader: its batches follow the loop's plans, epoch after epoch, from
    # the resume point on, for this process's shard of every global batch
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    ds = data.ArrayDataset(x, np.arange(20) % 2)
    mem, streamed = as_domain(ds, "source"), as_domain(Samples(ds), "source")
    mem.to(torch.device("cpu"), torch.contiguous_format)
    gen = torch.Generator().manual_seed(0)
    kw = dict(batch_size=4, steps=3, epochs=3, start_epoch=1, start_step=2,
              gen_state=gen.get_state(), shard=slice(2, 4), device=torch.device("cpu"),
              memory_format=torch.contiguous_format)
    feeds = [Feed([mem], **kw), Feed([streamed], workers=1, **kw)]
    for start in (2, 0):  # epoch 1 from step 2, then epoch 2 whole
        plan = epoch_plan(20, 3, 4, gen)
        a, b = (list(f.epoch([plan], start)) for f in feeds)
        assert len(a) == len(b) == 3 - start
        for (xa, ya), (xb, yb) in zip((p[0] for p in a), (p[0] for p in b), strict=True):
            torch.testing.assert_close(xa, xb)
            assert torch.equal(ya, yb)
        assert torch.equal(b[0][0][0][:, 0] / 2, plan[start, 2:4].float())
    for f in feeds:
        f.close()


@pytest.mark.slow
def test_an_iterable_or_indexless_dataset_is_refused(tiny_config, moons_domains):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from ()

    s, _, _ = moons_domains
    with pytest.raises(BackflipTypeError, match=r"IterableDataset .* needs a map-style Dataset"):
        train(tiny_config(), source=s, target=Stream())
    with pytest.raises(BackflipTypeError, match=r"must be a backflip.data.ArrayDataset .*got list"):
        train(tiny_config(), source=s, target=[1, 2, 3])


@pytest.mark.slow
def test_a_streamed_dataset_is_checked_on_the_samples_it_reads(tiny_config, moons_domains):
    s, t, _ = moons_domains
    bad = data.ArrayDataset(np.where(np.arange(len(t))[:, None] == 3, np.nan, t.x).astype(
        np.float32), t.y, t.num_classes, "bad")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\), the first in "
                       r"sample 3"):
        train(tiny_config(), source=s, target=Samples(bad, labelled=False))


@pytest.mark.slow
def test_a_streamed_run_writes_the_run_folder_a_preset_does(tmp_path, tiny_config, moons_domains):
    s, t, tt = moons_domains
    train(tiny_config(out=str(tmp_path), plots=True), source=Samples(s),
          target=Samples(t, labelled=False), target_test=Samples(tt))
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json", "report.md",
                 "curves-dann.png", "features-pca.png", "decision-boundary.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "| dann | 0." in report and "source: Samples (dataset)" in report
