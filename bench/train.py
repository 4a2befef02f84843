"""DANN training speed: the DA machinery's overhead, and our loop vs a textbook loop.

1. **Step overhead.** One DANN step (GRL with λ from the schedule, annealed lr, one
   forward of the concatenated source+target batch, CE + BCE-with-logits) divided by a
   plain supervised step on the same networks and the same concatenated batch (features
   and label head, CE on the source half, fixed lr; no domain head): the whole DA
   machinery's overhead. Also divided by the same two-head step without the GRL and
   the schedules (the domain head fed directly): the GRL's and schedules' own share.
   Interleaved repeats, median ratio. Target <= 1.05x.
2. **Epoch throughput.** Our loop (tensors in memory, batches by index, one forward of
   the concatenated batch, images and conv weights in NHWC as ``backflip.dann.train``
   keeps them) vs the common textbook recipe: a torch DataLoader over
   per-sample PIL transforms (uint8 array -> PIL image -> float tensor, written by hand
   since torchvision is not available), separate source and target forwards, and a
   copy-based GRL (``x.clone()`` forward, ``-lambd * g`` backward). Same MNIST network
   and optimizer, samples per second over the same number of steps. Two textbook data
   paths: the light one (in-memory PIL round trip) and fungtion/DANN's (the target as
   one PNG file per image, decoded per sample; Resize, ToTensor, Normalize by hand).
   The inputs are random pixels. Target >= 2x.
3. **skada's DANN** (PyPI ``skada.deep.DANN``, on skorch) vs ``backflip.dann.train`` on the
   same MNIST -> MNIST-M arrays (first 2000 (``--quick``) or 10000 samples per split, no
   validation split), the same initial network, batch 64 + 64, SGD momentum 0.9 with the
   paper's lr and λ schedules (a skorch callback for skada), 3 epochs: median seconds per
   epoch (ours minus its per-epoch evaluation) and final MNIST-M test accuracy. skada's
   default domain head is a softmax over one logit (constant 1, no adversarial gradient),
   so it gets a working head: GRL + our 768-100-1 discriminator + BCE-with-logits,
   with ``reg=0.5`` (its domain loss is the sum of the two domains' means, ours the mean
   of the joined batch) and NHWC weights as ours has. One seed each, run one after the
   other: the accuracy row is a single run, not a comparison of methods.
   Only where ``import skada.deep`` works; otherwise the row says why not.

    .venv/bin/python bench/train.py [--quick]

Prints a Markdown table and writes bench/out/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backflip.dann import build_model
from backflip.schedules import dann_lambda, dann_learning_rate

BATCH = 64


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = rng.random((n, 3, 28, 28), dtype=np.float32)
    xt = rng.random((n, 3, 28, 28), dtype=np.float32)
    ys = rng.integers(0, 10, n)
    return xs, ys, xt


def _step_fns(xs, ys, xt):
    torch.manual_seed(0)
    dann = build_model("mnist", (3, 28, 28))
    plain = build_model("mnist", (3, 28, 28))
    plain.load_state_dict(dann.state_dict())
    plain.grl = nn.Identity()
    opt_d = torch.optim.SGD(dann.parameters(), lr=0.01, momentum=0.9)
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    sx, sy, tx = torch.as_tensor(xs), torch.as_tensor(ys), torch.as_tensor(xt)
    dom = torch.cat([torch.zeros(BATCH), torch.ones(BATCH)])
    gen = torch.Generator().manual_seed(0)
    state = {"p": 0.0}

    def batch():
        i_s = torch.randint(len(sx), (BATCH,), generator=gen)
        i_t = torch.randint(len(tx), (BATCH,), generator=gen)
        return torch.cat([sx[i_s], tx[i_t]]), sy[i_s]

    def dann_step():
        p = state["p"] = (state["p"] + 1e-3) % 1.0
        for g in opt_d.param_groups:
            g["lr"] = dann_learning_rate(p)
        dann.grl.set_lambd(dann_lambda(p))
        x, y = batch()
        logits, d = dann(x, with_domain=True)
        loss = F.cross_entropy(logits[:BATCH], y) + F.binary_cross_entropy_with_logits(d, dom)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss.item()

    def no_grl_step():
        x, y = batch()
        logits, d = plain(x, with_domain=True)
        loss = F.cross_entropy(logits[:BATCH], y) + F.binary_cross_entropy_with_logits(d, dom)
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()
        return loss.item()

    def supervised_step():
        x, y = batch()
        loss = F.cross_entropy(supervised(x)[:BATCH], y)
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        opt_s.step()
        return loss.item()

    supervised = build_model("mnist", (3, 28, 28))
    supervised.load_state_dict(dann.state_dict())
    opt_s = torch.optim.SGD(supervised.parameters(), lr=0.01, momentum=0.9)
    return {"dann": dann_step, "no_grl": no_grl_step, "supervised": supervised_step}


def bench_step(repeats: int, steps: int) -> dict:
    fns = _step_fns(*_data(2048))
    for _ in range(3):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved blocks, same machine load
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[k].append((time.perf_counter() - t0) / steps)
    out = {f"{k}_step_s": statistics.median(t) for k, t in times.items()}
    for k in ("supervised", "no_grl"):
        out[f"ratio_vs_{k}"] = statistics.median(
            d / b for d, b in zip(times["dann"], times[k], strict=True))
    return out


# -- the textbook loop ---------------------------------------------------------------------


class _CopyGRL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return -ctx.lambd * g, None


class _PILDataset(torch.utils.data.Dataset):
    """Per-sample PIL round trip, as ``transforms.Compose([ToPILImage(), ToTensor()])`` does."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = (x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.x[i], mode="RGB")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(arr.transpose(2, 0, 1).copy()), int(self.y[i])


class _FileDataset(torch.utils.data.Dataset):
    """fungtion/DANN's data path, by hand (torchvision is not available): each item is
    ``Image.open(file).convert(mode)`` (the MNIST-M target: one PNG file per image) or
    ``Image.fromarray(uint8, mode)`` (the MNIST source, as torchvision's MNIST does), then
    ``Resize(28)``, ``ToTensor()`` and ``Normalize(mean, std)``; a grey source is expanded
    to 3 channels (fungtion does it in the model's forward)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, folder: Path | None, mode: str) -> None:
        from PIL import Image

        u8 = (x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        self.mode, self.y = mode, y
        if mode == "L":
            self.items = list(u8[..., 0])
        else:  # write one PNG per image, read back per item
            folder.mkdir(parents=True, exist_ok=True)
            self.items = []
            for i, img in enumerate(u8):
                path = folder / f"{i:06d}.png"
                Image.fromarray(img, mode="RGB").save(path)
                self.items.append(path)
        self.mean, self.std = (0.1307, 0.3081) if mode == "L" else (0.5, 0.5)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        item = self.items[i]
        img = Image.fromarray(item, mode="L") if self.mode == "L" else Image.open(item).convert("RGB")
        img = img.resize((28, 28), Image.BILINEAR)  # Resize(28)
        arr = np.asarray(img, dtype=np.float32) / 255.0  # ToTensor
        t = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        t = (t - self.mean) / self.std  # Normalize
        return t.expand(3, 28, 28) if self.mode == "L" else t, int(self.y[i])


def _textbook_epoch(model, opt, ds_s, ds_t, steps: int) -> None:
    src = torch.utils.data.DataLoader(ds_s, batch_size=BATCH, shuffle=True, drop_last=True)
    tgt = torch.utils.data.DataLoader(ds_t, batch_size=BATCH, shuffle=True, drop_last=True)
    for step, ((x_s, y_s), (x_t, _)) in enumerate(zip(src, tgt, strict=False)):
        if step == steps:
            break
        p = step / steps
        lambd = dann_lambda(p)
        f_s, f_t = model.features(x_s), model.features(x_t)  # separate forwards
        loss = F.cross_entropy(model.classifier(f_s), y_s)
        d_s = model.discriminator(_CopyGRL.apply(f_s, lambd)).reshape(-1)
        d_t = model.discriminator(_CopyGRL.apply(f_t, lambd)).reshape(-1)
        loss = loss + F.binary_cross_entropy_with_logits(d_s, torch.zeros(BATCH)) \
            + F.binary_cross_entropy_with_logits(d_t, torch.ones(BATCH))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _our_epoch(model, opt, sx, sy, tx, steps: int, gen) -> None:
    i_s = torch.randperm(len(sx), generator=gen)[: steps * BATCH].view(steps, BATCH)
    i_t = torch.randperm(len(tx), generator=gen)[: steps * BATCH].view(steps, BATCH)
    dom = torch.cat([torch.zeros(BATCH), torch.ones(BATCH)])
    for step in range(steps):
        p = step / steps
        for g in opt.param_groups:
            g["lr"] = dann_learning_rate(p)
        model.grl.set_lambd(dann_lambda(p))
        logits, d = model(torch.cat([sx[i_s[step]], tx[i_t[step]]]), with_domain=True)
        loss = F.cross_entropy(logits[:BATCH], sy[i_s[step]]) + \
            F.binary_cross_entropy_with_logits(d, dom)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def bench_epoch(repeats: int, steps: int) -> dict:
    """Samples per second of our epoch vs the two textbook loops, interleaved repeats.

    ``textbook``: in-memory PIL round trip per sample. ``textbook_files``: fungtion/DANN's
    data path (target PNG files decoded per sample, Resize, ToTensor, Normalize). Both
    with ``num_workers=0``: every loop gets the same single core (torch threads = 1).
    """
    import tempfile

    xs, ys, xt = _data(steps * BATCH)
    torch.manual_seed(0)
    models = {k: build_model("mnist", (3, 28, 28)) for k in ("ours", "textbook", "textbook_files")}
    # ours as backflip.dann.train runs it: images and conv weights in NHWC (channels_last)
    nhwc = torch.channels_last
    models["ours"] = models["ours"].to(memory_format=nhwc)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    sx, sy = torch.as_tensor(xs).contiguous(memory_format=nhwc), torch.as_tensor(ys)
    tx = torch.as_tensor(xt).contiguous(memory_format=nhwc)
    gen = torch.Generator().manual_seed(0)
    zeros = np.zeros(len(xt), np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"textbook": (_PILDataset(xs, ys), _PILDataset(xt, zeros)),
                "textbook_files": (_FileDataset(xs, ys, None, "L"),
                                   _FileDataset(xt, zeros, Path(tmp), "RGB"))}
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(repeats):
            for k in models:
                t0 = time.perf_counter()
                if k == "ours":
                    _our_epoch(models[k], opts[k], sx, sy, tx, steps, gen)
                else:
                    _textbook_epoch(models[k], opts[k], *sets[k], steps)
                times[k].append(time.perf_counter() - t0)
    n = steps * BATCH * 2
    out = {f"{k}_samples_per_s": n / statistics.median(t) for k, t in times.items()}
    for k in ("textbook", "textbook_files"):
        out[f"speedup_vs_{k}"] = statistics.median(
            b / o for o, b in zip(times["ours"], times[k], strict=True))
    return out


class _SkadaBase(nn.Module):
    # skada calls base_module_(X) in training and base_module_(X, sample_weight=...) to
    # predict; the features of ``layer_name="features"`` are caught by a forward hook.
    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x, sample_weight=None):
        return self.classifier(self.features(x))


class _LogitDomainHead(nn.Module):
    # skada's default DomainClassifier ends in Linear(100, 1) + Softmax over that ONE
    # logit: the output is always 1.0, so the BCE gradient is 0 and the encoder gets no
    # adversarial signal. This head is ours instead: skada's GradientReversalLayer, then
    # OUR discriminator (768 -> 100 -> 1, raw logit), trained with
    # domain_criterion=BCEWithLogitsLoss. That works with skada's DANNLoss, which calls
    # domain_criterion(pred_s, zeros(N)) + domain_criterion(pred_t, ones(N)) on 1-D
    # predictions (hence reshape(-1)); BCE-with-logits is the numerically safe form.
    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.alpha = 0.0  # λ, set per batch by _SkadaSchedule

    def forward(self, x, sample_weight=None):
        from skada.deep.modules import GradientReversalLayer

        return self.discriminator(GradientReversalLayer.apply(x, self.alpha)).reshape(-1)


def _skada_schedule(head: _LogitDomainHead, total: int):
    # skada's DANN has a fixed λ (the head's alpha) and skorch a fixed lr; our train()
    # anneals both. This callback applies the same λ(p) and lr(p) per batch, so the two
    # rows differ only in the training machinery, not the recipe.
    from skorch.callbacks import Callback

    class _SkadaSchedule(Callback):
        def initialize(self):
            self.step = 0
            return self

        def on_batch_begin(self, net, batch=None, training=False, **kwargs):
            if not training:
                return
            p = min(self.step / total, 1.0)
            head.alpha = dann_lambda(p)
            for g in net.optimizer_.param_groups:
                g["lr"] = dann_learning_rate(p)
            self.step += 1

    return _SkadaSchedule()


@torch.no_grad()
def _accuracy(features: nn.Module, classifier: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    features.eval(), classifier.eval()
    pred = torch.cat([classifier(features(torch.as_tensor(x[i:i + 512]))).argmax(1)
                      for i in range(0, len(x), 512)])
    return float((pred.numpy() == y).mean())


def bench_skada(limit: int, epochs: int) -> dict:
    """skada.deep.DANN vs backflip.dann.train: same data, network, batch, recipe, epochs."""
    try:
        import skada.deep
    except ImportError as err:
        return {"status": f"not measured: import skada.deep failed ({err})"}
    from backflip.dann import TrainConfig, load_domain, train

    # MNIST -> MNIST-M, the first `limit` samples of each split; no validation split, so
    # both trainers see exactly the same source and target training arrays.
    cfg = TrainConfig(source="mnist", target="mnistm", source_transform="rgb", arch="mnist",
                      epochs=epochs, batch_size=BATCH, limit=limit, val_fraction=0.0,
                      eval_limit=200, progress=False, seed=0)
    src, tgt = load_domain(cfg, "source", "train"), load_domain(cfg, "target", "train")
    test = load_domain(cfg, "target", "test")

    # -- backflip: history "seconds" is the epoch's steps + its per-epoch evaluation
    # (accuracies, SND, DEV on eval_limit samples), which skorch's "dur" does not have
    # (train_split=None); that evaluation is timed here and subtracted.
    from backflip.dann import _train

    evaluate, eval_s = _train.evaluate, []

    def timed_evaluate(*args, **kwargs):
        t0 = time.perf_counter()
        out = evaluate(*args, **kwargs)
        eval_s.append(time.perf_counter() - t0)
        return out

    _train.evaluate = timed_evaluate
    try:
        res = train(cfg, source=src, target=tgt, target_test=test)
    finally:
        _train.evaluate = evaluate
    ours_s = [row["seconds"] - e for row, e in zip(res.history, eval_s, strict=True)]
    ours_acc = _accuracy(res.model.features, res.model.classifier, test.x, test.y)

    # -- skada: the same initial network (seeded like train()), source-fitted Standardize
    torch.manual_seed(cfg.seed)
    model = build_model("mnist", tuple(src.x.shape[1:]))
    model.features[0].fit(torch.as_tensor(src.x))
    # NHWC weights, as train() keeps them: the convolutions then run (and hand on) NHWC
    # activations from skorch's NCHW batches, so the layout is not what differs
    model = model.to(memory_format=torch.channels_last)
    head = _LogitDomainHead(model.discriminator)
    steps = max(len(src), len(tgt)) // BATCH
    net = skada.deep.DANN(
        # reg 0.5: skada adds BCE(source) + BCE(target), two means; our loss is the
        # mean over the joined batch, their half-sum
        _SkadaBase(model.features, model.classifier), layer_name="features", reg=0.5,
        domain_classifier=head, domain_criterion=nn.BCEWithLogitsLoss(),
        batch_size=BATCH,  # per domain: DomainBalancedDataLoader yields 64 + 64
        max_epochs=epochs, train_split=None, optimizer=torch.optim.SGD, lr=cfg.lr,
        optimizer__momentum=cfg.momentum, callbacks=[_skada_schedule(head, steps * epochs)],
        verbose=0, device="cpu")
    x = np.concatenate([src.x, tgt.x])
    y = np.concatenate([src.y, np.full(len(tgt), -1)])  # target labels masked (skada: -1)
    sample_domain = np.concatenate([np.ones(len(src), int), -np.ones(len(tgt), int)])
    t0 = time.perf_counter()
    net.fit(x, y, sample_domain=sample_domain)
    skada_total = time.perf_counter() - t0
    skada_s = list(net.history[:, "dur"])
    assert net.module_.base_module_.features is model.features  # trained in place
    skada_acc = _accuracy(model.features, model.classifier, test.x, test.y)
    ours_med, skada_med = statistics.median(ours_s), statistics.median(skada_s)
    return {"status": "measured", "limit": limit, "epochs": epochs,
            "source_train": len(src), "target_train": len(tgt), "target_test": len(test),
            "ours_epoch_s": ours_s, "ours_eval_s": eval_s, "skada_epoch_s": skada_s, "skada_fit_s": skada_total,
            "ours_epoch_median_s": ours_med, "skada_epoch_median_s": skada_med,
            "ratio": skada_med / ours_med, "ours_target_acc": ours_acc,
            "skada_target_acc": skada_acc,
            "skada_head": "GRL + 768-100-1 logit head, BCEWithLogitsLoss (default head is "
                          "a softmax over one logit: constant, no adversarial gradient)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 2 minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    step = bench_step(repeats, 10 if args.quick else 30)
    epoch = bench_epoch(repeats, 15 if args.quick else 60)
    skada = bench_skada(2000 if args.quick else 10000, 3)
    print("| measurement | ours | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| DANN step vs plain supervised step (MNIST net, 64+64 batch, CE only) | "
          f"{step['dann_step_s'] * 1e3:.1f} ms | {step['supervised_step_s'] * 1e3:.1f} ms | "
          f"{step['ratio_vs_supervised']:.3f}x | <= 1.05x |")
    print(f"| DANN step vs the same two-head step without GRL and schedules | "
          f"{step['dann_step_s'] * 1e3:.1f} ms | {step['no_grl_step_s'] * 1e3:.1f} ms | "
          f"{step['ratio_vs_no_grl']:.3f}x | |")
    for k, what in (("textbook", "in-memory PIL round trip"),
                    ("textbook_files", "fungtion/DANN data path: PNG files, Resize, Normalize")):
        print(f"| epoch throughput vs textbook loop, {what} (samples/s) | "
              f"{epoch['ours_samples_per_s']:.0f} | {epoch[k + '_samples_per_s']:.0f} | "
              f"{epoch['speedup_vs_' + k]:.2f}x faster | >= 2x |")
    if skada["status"] == "measured":
        print(f"| skada DANN (given a working domain head) vs ours, MNIST->MNIST-M "
              f"({skada['source_train']}+{skada['target_train']} samples, "
              f"{skada['epochs']} epochs, both NHWC, one seed): s/epoch | "
              f"{skada['ours_epoch_median_s']:.2f} s | {skada['skada_epoch_median_s']:.2f} s | "
              f"skada/ours {skada['ratio']:.2f}x | |")
        print(f"| same runs: target (MNIST-M test, {skada['target_test']}) accuracy | "
              f"{skada['ours_target_acc']:.3f} | {skada['skada_target_acc']:.3f} | | |")
    else:
        print(f"| skada DANN | {skada['status']} | | | |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps({
        "step": step, "epoch": epoch, "skada": skada, "quick": args.quick,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
