"""Each training method's step time as a ratio to dann's, on two built-in networks.

A step is built as ``backflip.dann.train`` builds it: the method object
(``get_method(name)``), its heads (``method.heads(model, feature_dim, num_classes,
config)``), ``Adapted(method, model, heads, config, None)``, then
``forward(xs, ys, xt, yt, step)``, backward of ``out["loss"]`` and an SGD step
(momentum 0.9, lr 0.01); λ is set once (``adapted.set_lambd(0.5)``). Two networks: the
paper's MNIST net (``build_model("mnist", (3, 28, 28), 10)``, NHWC weights and images as
the trainer keeps them) and the built-in mlp on 106-d vectors (adult's size, 2 classes,
its default width). Batch 64 source + 64 target, random inputs, fresh indices each step.
Every method runs ``steps`` steps per block, the blocks interleaved over ``repeats``
rounds; the table gives each method's median step time and the median over the rounds
of its time divided by dann's in the same round. One torch thread.

    .venv/bin/python bench/method_step.py [--quick]

Prints a Markdown table per network and writes bench/out/method_step.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _timing import machine_meta
from backflip.dann import build_model
from backflip.dann._adapted import Adapted
from backflip.dann._config import METHODS, TrainConfig
from backflip.dann._methods import get_method

BATCH = 64
#: name -> (build_model arguments, sample shape, classes)
NETWORKS = {"MNIST net (3x28x28, 10 classes)": (("mnist", (3, 28, 28), 10), (3, 28, 28), 10),
            "mlp (106-d, 2 classes)": (("mlp", (106,), 2), (106,), 2)}


def _step_fn(name: str, arch: tuple, shape: tuple[int, ...], classes: int):
    # One method's step on its own copy of the network (seeded alike), as the trainer does it.
    cfg = TrainConfig(method=name, batch_size=BATCH, seed=0)
    torch.manual_seed(0)
    model = build_model(*arch)
    nhwc = torch.channels_last if len(shape) == 3 else torch.contiguous_format
    with torch.no_grad():
        dim = model.features(torch.zeros(2, *shape)).flatten(1).shape[1]
    method = get_method(name)
    heads = method.heads(model, dim, classes, cfg)
    model = model.to(memory_format=nhwc)
    adapted = Adapted(method, model, heads, cfg, None)
    adapted.set_lambd(0.5)
    opt = torch.optim.SGD(adapted.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    pool = 1024
    xs = torch.rand(pool, *shape, generator=gen).contiguous(memory_format=nhwc)
    xt = torch.rand(pool, *shape, generator=gen).contiguous(memory_format=nhwc)
    ys = torch.randint(classes, (pool,), generator=gen)
    yt = torch.randint(classes, (pool,), generator=gen)
    state = {"step": 0}

    def step() -> None:
        i_s = torch.randint(pool, (BATCH,), generator=gen)
        i_t = torch.randint(pool, (BATCH,), generator=gen)
        out = adapted(xs[i_s], ys[i_s], xt[i_t], yt[i_t], state["step"])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        state["step"] += 1

    return step


def bench_network(arch: tuple, shape: tuple[int, ...], classes: int, repeats: int,
                  steps: int) -> list[dict]:
    """Per method: median ms per step and the median per-round ratio to dann."""
    fns = {name: _step_fn(name, arch, shape, classes) for name in METHODS}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved blocks: every method sees the same load
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    return [{"method": name, "ms_per_step": 1e3 * statistics.median(t),
             "ratio_to_dann": statistics.median(
                 a / b for a, b in zip(t, times["dann"], strict=True)),
             "step_s": t} for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 1 minute)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats, steps = (3, 5) if args.quick else (7, 20)
    results = {}
    for label, (arch, shape, classes) in NETWORKS.items():
        rows = bench_network(arch, shape, classes, repeats, steps)
        results[label] = rows
        print(f"\n{label}, batch {BATCH} + {BATCH}, median of {repeats} interleaved rounds "
              f"of {steps} steps\n")
        print("| method | ms/step | ratio to dann |")
        print("|---|---:|---:|")
        for r in rows:
            print(f"| {r['method']} | {r['ms_per_step']:.2f} | {r['ratio_to_dann']:.2f} |")
    meta = machine_meta({"quick": args.quick, "repeats": repeats, "steps": steps,
                         "batch": BATCH, "threads": 1, "torch": torch.__version__})
    out = Path(__file__).parent / "out" / "method_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "networks": results}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
