"""Saliency images per second: guided backprop vs plain gradients on the digits CNN.

The network is the MNIST architecture of Ganin & Lempitsky (2015): conv 32 5x5,
max-pool 2, conv 48 5x5, max-pool 2, fc 100, fc 100, 10 (ReLU after each hidden layer),
on 3 x 28 x 28 inputs (MNIST -> MNIST-M), untrained weights (speed does not depend on
them). All methods run interleaved in the same process (one CPU thread); each repeat is
timed with time.process_time (CPU time of this process, less disturbed by other jobs on a
shared machine than wall time), median of repeats; ratios are time per image relative to plain gradients (median, and the
ratio of the fastest repeats, which is less sensitive to other load on the machine).

Rows: plain gradients; backflip guided backprop on the nn.ReLU model and on the same
model written with F.relu; a hand-written module-hook guided backprop (what Captum
does: a full backward hook on each nn.ReLU); Captum's GuidedBackprop where installed.

Run: ``.venv/bin/python bench/saliency.py [--quick]``; writes bench/out/saliency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backflip.saliency import gradient, guided_backprop


def digits_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(48 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip


class FunctionalDigitsCNN(nn.Module):
    """The same weights, with F.relu calls instead of nn.ReLU modules."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.s = seq

    def forward(self, x):
        s = self.s
        x = F.max_pool2d(F.relu(s[0](x)), 2)
        x = F.max_pool2d(F.relu(s[3](x)), 2).flatten(1)
        return s[11](F.relu(s[9](F.relu(s[7](x)))))


def hook_guided(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    def hook(module, grad_input, grad_output):
        return tuple(torch.relu(g) for g in grad_input)

    handles = [m.register_full_backward_hook(hook) for m in model.modules()
               if isinstance(m, nn.ReLU)]  # fmt: skip
    try:
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
        (g,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), x)
    finally:
        for h in handles:
            h.remove()
    return g


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    repeats, inner = (11, 2) if args.quick else (41, 2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    seq = digits_cnn().eval()
    fun = FunctionalDigitsCNN(seq).eval()
    x = torch.rand(args.batch, 3, 28, 28)
    t = torch.randint(0, 10, (args.batch,))

    methods = {
        "gradient (baseline)": lambda: gradient(seq, x, t),
        "backflip guided, nn.ReLU model": lambda: guided_backprop(seq, x, t),
        "backflip guided, F.relu model": lambda: guided_backprop(fun, x, t),
        "module-hook guided (Captum's approach)": lambda: hook_guided(seq, x, t),
    }
    try:
        import warnings

        from captum.attr import GuidedBackprop

        gb = GuidedBackprop(seq)

        def captum():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return gb.attribute(x.clone().requires_grad_(True), target=t)

        methods["Captum GuidedBackprop"] = captum
    except ImportError:
        print("captum not installed: its row is left out", file=sys.stderr)

    ref = guided_backprop(seq, x, t)  # sanity: all guided variants agree
    for name in ("backflip guided, F.relu model", "module-hook guided (Captum's approach)"):
        torch.testing.assert_close(methods[name](), ref)

    load0 = os.getloadavg()[0]  # other processes on the machine skew the ratios
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():  # interleaved: same machine state for all
            start = time.process_time()
            for _ in range(inner):
                fn()
            times[name].append((time.process_time() - start) / inner)

    base = statistics.median(times["gradient (baseline)"])
    base_min = min(times["gradient (baseline)"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"method": name, "ms_per_batch": med * 1e3, "images_per_s": args.batch / med,
                     "ratio_vs_gradient": med / base,
                     "ratio_of_minima": min(ts) / base_min})  # fmt: skip
    print(f"Saliency maps, digits CNN (3x28x28), batch {args.batch}, 1 CPU thread, "
          f"CPU time, median of {repeats} x {inner} calls, torch {torch.__version__}, "
          f"{platform.machine()}, load average before/after "
          f"{load0:.2f}/{os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| method | ms / batch | images / s | time vs gradient | same, fastest runs |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['ms_per_batch']:.1f} | {r['images_per_s']:.0f} | "
              f"{r['ratio_vs_gradient']:.2f}x | {r['ratio_of_minima']:.2f}x |")  # fmt: skip
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    meta = {"batch": args.batch, "repeats": repeats, "inner": inner, "threads": 1,
            "torch": torch.__version__, "machine": platform.machine(), "quick": args.quick,
            "load_average": [load0, os.getloadavg()[0]]}  # fmt: skip
    (out / "saliency.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
