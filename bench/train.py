"""DANN training speed: the DA machinery's overhead, and our loop vs a textbook loop.

1. **Step overhead.** One DANN step (GRL with λ from the schedule, annealed lr, one
   forward of the concatenated source+target batch, CE + BCE-with-logits) divided by a
   plain supervised step on the same networks and the same concatenated batch (the
   domain head fed directly, no GRL, fixed lr/λ). Interleaved repeats, median ratio.
   Target <= 1.05x.
2. **Epoch throughput.** Our loop (tensors in memory, batches by index, one forward of
   the concatenated batch) vs the common textbook recipe: a torch DataLoader over
   per-sample PIL transforms (uint8 array -> PIL image -> float tensor, written by hand
   since torchvision is not available), separate source and target forwards, and a
   copy-based GRL (``x.clone()`` forward, ``-lambd * g`` backward). Same MNIST network
   and optimizer, samples per second over the same number of steps. Target >= 2x.
3. **skada's DANN** (PyPI): only where ``import skada.deep`` works (it needs skorch);
   otherwise the row says why not. The comparison itself is not written yet.

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

    def plain_step():
        x, y = batch()
        logits, d = plain(x, with_domain=True)
        loss = F.cross_entropy(logits[:BATCH], y) + F.binary_cross_entropy_with_logits(d, dom)
        opt_p.zero_grad(set_to_none=True)
        loss.backward()
        opt_p.step()
        return loss.item()

    return dann_step, plain_step


def bench_step(repeats: int, steps: int) -> dict:
    dann_step, plain_step = _step_fns(*_data(2048))
    for _ in range(3):
        dann_step(), plain_step()
    t_d, t_p = [], []
    for _ in range(repeats):  # interleaved blocks, same machine load
        for fn, out in ((dann_step, t_d), (plain_step, t_p)):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            out.append((time.perf_counter() - t0) / steps)
    return {"dann_step_s": statistics.median(t_d), "plain_step_s": statistics.median(t_p),
            "ratio": statistics.median(d / p for d, p in zip(t_d, t_p, strict=True))}


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


def _textbook_epoch(model, opt, xs, ys, xt, steps: int) -> None:
    src = torch.utils.data.DataLoader(_PILDataset(xs, ys), batch_size=BATCH, shuffle=True,
                                      drop_last=True)
    tgt = torch.utils.data.DataLoader(_PILDataset(xt, np.zeros(len(xt), np.int64)),
                                      batch_size=BATCH, shuffle=True, drop_last=True)
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
    xs, ys, xt = _data(steps * BATCH)
    torch.manual_seed(0)
    m_ours, m_book = build_model("mnist", (3, 28, 28)), build_model("mnist", (3, 28, 28))
    o_ours = torch.optim.SGD(m_ours.parameters(), lr=0.01, momentum=0.9)
    o_book = torch.optim.SGD(m_book.parameters(), lr=0.01, momentum=0.9)
    sx, sy, tx = torch.as_tensor(xs), torch.as_tensor(ys), torch.as_tensor(xt)
    gen = torch.Generator().manual_seed(0)
    t_o, t_b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _our_epoch(m_ours, o_ours, sx, sy, tx, steps, gen)
        t_o.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _textbook_epoch(m_book, o_book, xs, ys, xt, steps)
        t_b.append(time.perf_counter() - t0)
    n = steps * BATCH * 2
    return {"ours_samples_per_s": n / statistics.median(t_o),
            "textbook_samples_per_s": n / statistics.median(t_b),
            "speedup": statistics.median(b / o for o, b in zip(t_o, t_b, strict=True))}


def bench_skada() -> dict:
    try:
        import skada.deep  # noqa: F401  (its DANN lives here and needs skorch)
    except ImportError as err:
        return {"status": f"not measured: import skada.deep failed ({err})"}
    return {"status": "skada.deep importable, but this comparison is not written yet"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 2 minutes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    step = bench_step(repeats, 10 if args.quick else 30)
    epoch = bench_epoch(repeats, 15 if args.quick else 60)
    skada = bench_skada()
    print("| measurement | ours | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| DANN step vs plain supervised step (MNIST net, 64+64 batch) | "
          f"{step['dann_step_s'] * 1e3:.1f} ms | {step['plain_step_s'] * 1e3:.1f} ms | "
          f"{step['ratio']:.3f}x | <= 1.05x |")
    print(f"| epoch throughput vs textbook loop (samples/s) | {epoch['ours_samples_per_s']:.0f} | "
          f"{epoch['textbook_samples_per_s']:.0f} | {epoch['speedup']:.2f}x faster | >= 2x |")
    print(f"| skada DANN | {skada['status']} | | | |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps({
        "step": step, "epoch": epoch, "skada": skada, "quick": args.quick,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
