"""DANN epoch throughput from image files: in memory vs streamed vs the textbook loop.

The data: the first N (``--quick``: 2000, else 10000) MNIST training images, repeated
to 3 channels (``backflip.data.to_rgb``), as source, and the first N MNIST-M training
images as target, each written out as uint8 RGB PNG files in class folders
(``root/<class>/<i>.png``) in a temporary folder; the first 200 MNIST-M test images
likewise, as the target test set. Three rows train the same network (the built-in
``arch="mnist"``, seed 0) with the same recipe (SGD momentum 0.9, the paper's lr and λ
schedules, 64 source + 64 target samples per step, N // 64 steps per epoch, 3 epochs):

1. **in memory**: ``backflip.dann.train`` given ``ImageFolder(dir).to_arrays()`` for
   each domain: the arrays are copied to the device once, every batch is an index
   gather there, one forward of the concatenated batch, NHWC.
2. **streamed**: the same call given the ``ImageFolder`` objects themselves and
   ``TrainConfig(workers=2)``: every step's 64 + 64 PNG files are decoded by the
   trainer's DataLoader (one per epoch, 2 worker processes, both domains in one loader).
3. **textbook**: the loop of the tutorials, written by hand (torchvision is not
   available): per domain a ``torch.utils.data.DataLoader(shuffle=True, num_workers=2,
   drop_last=True)`` over a Dataset that opens each PNG with PIL, ``convert("RGB")``,
   ``np.asarray`` and divides a float tensor by 255 per sample; ``zip`` of the two
   loaders; separate forwards of the source and target batches through features,
   classifier and, behind the same ``backflip.torch.GradientReversal``, the
   discriminator; CE + BCE-with-logits of each domain; NCHW, as the tutorials run it.
   Its ``Standardize`` layer is fitted on the source like the trainer's.

The trainer's ``history[i]["seconds"]`` includes its per-epoch evaluation (on the
first ``eval_limit=200`` samples of each domain, held on the device in both trainer
rows, so the same work); that evaluation is timed (a wrapper around
``backflip.dann._train.evaluate``) and subtracted, so every row's "epoch" is its
N // 64 training steps, data loading and per-epoch worker start-up included. Each row
reports the median over epochs 2 and 3 (epoch 1 of each run is dropped as warm-up:
first-touch allocation, lazy imports) of seconds per epoch, samples (source + target)
per second, and CPU seconds per epoch (this process plus its exited DataLoader
workers, ``getrusage``): the work a row does, less sensitive to other jobs than its
wall time (on a busy 2-core machine the wall time follows it). The rows run one after
the other, in ``--rounds`` rounds (default 2, ``--quick`` 1) with the order rotated per
round; medians are over every round's kept epochs. Other settings:
``val_fraction=0.0``, ``plots=False``, ``progress=False``, seed 0, CPU, torch threads
``--threads`` (default 1 in every row, so the DataLoader workers have the second core).
Targets: streamed / in memory <= 1.25 and textbook / streamed > 1. Below the tables,
where the streamed path's time goes: PNG decode per sample in one process, the
trainer's loader alone (start-up to its first batch, a whole epoch of batches with no
training, and the CPU that took), and an in-memory step's gather.

    .venv/bin/python bench/train_data.py [--quick] [--rounds R] [--threads T]

Prints a Markdown table and writes bench/out/train_data.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backflip import data
from backflip.dann import TrainConfig, build_model, train
from backflip.schedules import dann_lambda, dann_learning_rate

BATCH = 64
EPOCHS = 3
WORKERS = 2
EVAL_LIMIT = 200
ROWS = ("in_memory", "streamed", "textbook")


# -- the data: MNIST -> MNIST-M as PNG files in class folders ------------------------------


def _write_folder(ds: data.ArrayDataset, root: Path) -> Path:
    from PIL import Image

    u8 = np.clip(np.rint(ds.x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for i, (img, label) in enumerate(zip(u8, ds.y.tolist(), strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="RGB").save(folder / f"{i:05d}.png")
    return root


def write_data(n: int, tmp: Path) -> dict[str, Path]:
    """Source, target and target-test folders of uint8 RGB PNG files."""
    sets = {"source": data.to_rgb(data.load("mnist", "train", limit=n)),
            "target": data.load("mnistm", "train", limit=n),
            "target_test": data.load("mnistm", "test", limit=EVAL_LIMIT)}
    return {k: _write_folder(ds, tmp / k) for k, ds in sets.items()}


# -- rows 1 and 2: backflip.dann.train -----------------------------------------------------


def _cpu_s() -> float:
    # CPU seconds of this process and of its reaped children (exited DataLoader workers).
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def _timed_evaluation(seconds: list[float], cpu: list[tuple[float, float]]):
    # train() calls the name `evaluate` of backflip.dann._train once per epoch; time it,
    # and note the CPU seconds at its start and end (the steps of epoch k >= 2 used
    # start_k - end_{k-1}; epoch k's workers have exited and been reaped by then).
    from backflip.dann import _train

    original = getattr(_train, "evaluate", None)
    if original is None:
        raise RuntimeError("backflip.dann._train.evaluate is gone; update bench/train_data.py "
                           "to time the per-epoch evaluation where it now lives.")

    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), _cpu_s()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)
            cpu.append((c0, _cpu_s()))

    _train.evaluate = timed
    try:
        yield
    finally:
        _train.evaluate = original


def _config(workers: int, threads: int) -> TrainConfig:
    return TrainConfig(arch="mnist", epochs=EPOCHS, batch_size=BATCH, val_fraction=0.0,
                       eval_limit=EVAL_LIMIT, plots=False, progress=False, threads=threads,
                       workers=workers, seed=0)


def trainer_row(folders: dict[str, Path], streamed: bool, threads: int) -> dict:
    """One ``train()`` run: per-epoch seconds, its evaluation's share, set-up, accuracy."""
    t0 = time.perf_counter()
    sets = {k: data.ImageFolder(p, channels=3) for k, p in folders.items()}
    if not streamed:
        sets = {k: ds.to_arrays() for k, ds in sets.items()}
    read_s = time.perf_counter() - t0
    eval_s: list[float] = []
    cpu: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    with _timed_evaluation(eval_s, cpu):
        res = train(_config(WORKERS if streamed else 0, threads), source=sets["source"],
                    target=sets["target"], target_test=sets["target_test"])
    wall = time.perf_counter() - t0
    recorded = [row["seconds"] for row in res.history]
    return {"epoch_s": [r - e for r, e in zip(recorded, eval_s, strict=True)],
            "cpu_s": [None] + [start - end for (_, end), (start, _) in itertools.pairwise(cpu)],
            "recorded_epoch_s": recorded, "eval_s": eval_s, "read_s": read_s,
            "setup_s": wall - sum(recorded), "target_acc": res.target_accuracy}


# -- row 3: the textbook loop --------------------------------------------------------------


class PNGFolder(torch.utils.data.Dataset):
    """The tutorials' image-folder Dataset: one PIL open and conversion per sample."""

    def __init__(self, root: Path) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(f, k) for k, c in enumerate(classes)
                      for f in sorted((root / c).glob("*.png"))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.items[i]
        img = Image.open(path).convert("RGB")
        x = torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1).copy()) / 255.0
        return x, label


def textbook_row(folders: dict[str, Path], threads: int) -> dict:
    """A hand-written DANN loop: a DataLoader per domain, separate forwards, GRL, CE + BCE."""
    torch.set_num_threads(threads)
    src, tgt = PNGFolder(folders["source"]), PNGFolder(folders["target"])
    torch.manual_seed(0)
    model = build_model("mnist", (3, 28, 28), 10)
    model.features[0].fit(torch.stack([src[i][0] for i in range(len(src))]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps = min(len(src), len(tgt)) // BATCH
    zeros, ones = torch.zeros(BATCH), torch.ones(BATCH)
    epoch_s, cpu_s = [], []
    for epoch in range(EPOCHS):
        t0, c0 = time.perf_counter(), _cpu_s()
        loaders = [torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                               num_workers=WORKERS, drop_last=True)
                   for ds in (src, tgt)]
        done = 0
        for step, ((x_s, y_s), (x_t, _)) in enumerate(zip(*loaders, strict=True)):
            # schedule: the paper's lr and λ from progress p
            p = (epoch * steps + step) / (EPOCHS * steps)
            for group in opt.param_groups:
                group["lr"] = dann_learning_rate(p)
            model.grl.set_lambd(dann_lambda(p))
            # forwards: source and target separately
            f_s, f_t = model.features(x_s), model.features(x_t)
            d_s = model.discriminator(model.grl(f_s)).reshape(-1)
            d_t = model.discriminator(model.grl(f_t)).reshape(-1)
            loss = (F.cross_entropy(model.classifier(f_s), y_s)
                    + F.binary_cross_entropy_with_logits(d_s, zeros)
                    + F.binary_cross_entropy_with_logits(d_t, ones))
            # backward and step
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
        epoch_s.append(time.perf_counter() - t0)
        cpu_s.append(_cpu_s() - c0)  # both loaders exhausted: their workers are reaped
        assert done == steps, (done, steps)
    return {"epoch_s": epoch_s, "cpu_s": cpu_s}


# -- where the streamed path's time goes ---------------------------------------------------


def diagnostics(folders: dict[str, Path], n: int, threads: int) -> dict:
    """Decode cost per sample, the trainer's loader alone, an in-memory gather."""
    from backflip.dann._feed import Feed, as_domain, epoch_plan

    torch.set_num_threads(threads)
    src = data.ImageFolder(folders["source"], channels=3)
    tgt = data.ImageFolder(folders["target"], channels=3)
    m = min(1000, len(src))
    t0 = time.perf_counter()
    for i in range(m):
        src[i]
    decode_us = 1e6 * (time.perf_counter() - t0) / m
    pngs = PNGFolder(folders["source"])
    t0 = time.perf_counter()
    for i in range(m):
        pngs[i]
    textbook_us = 1e6 * (time.perf_counter() - t0) / m

    steps = n // BATCH
    gen = torch.Generator().manual_seed(1)
    start = gen.get_state()
    plans = [epoch_plan(len(d), steps, BATCH, gen) for d in (src, tgt)]
    domains = [as_domain(src, "source"), as_domain(tgt, "target")]
    host = torch.device("cpu")
    c0, t0 = _cpu_s(), time.perf_counter()
    def feed(doms, workers=0):
        return Feed(doms, batch_size=BATCH, steps=steps, epochs=1, start_epoch=0, start_step=0,
                    gen_state=start, shard=slice(None), device=host,
                    memory_format=torch.channels_last, workers=workers)

    streamed = feed(domains, WORKERS)
    batches = streamed.epoch(plans, 0)
    next(batches)
    first_s = time.perf_counter() - t0
    for _ in batches:
        pass
    loader_s = time.perf_counter() - t0
    del batches  # the workers exit and are reaped: their CPU time is counted below
    streamed.close()
    loader_cpu_s = _cpu_s() - c0

    arrays = [as_domain(d.to_arrays(), r).to(host, torch.channels_last)
              for d, r in ((src, "source"), (tgt, "target"))]
    t0 = time.perf_counter()
    for _ in feed(arrays).epoch(plans, 0):
        pass
    gather_us = 1e6 * (time.perf_counter() - t0) / steps
    return {"decode_us_per_sample": decode_us, "textbook_item_us_per_sample": textbook_us,
            "loader_first_batch_s": first_s, "loader_epoch_s": loader_s,
            "loader_samples_per_s": 2 * BATCH * steps / loader_s,
            "loader_cpu_s": loader_cpu_s,
            "in_memory_gather_us_per_step": gather_us, "steps": steps}


def _kept(rows: list[dict], key: str = "epoch_s") -> list[float]:
    return [s for r in rows for s in r[key][1:]]  # epoch 1 of each run: warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2000 samples per domain (< 2 min)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="runs of each row (default 2; --quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    n = 2000 if args.quick else 10000
    args.rounds = args.rounds or (1 if args.quick else 2)
    load_before = os.getloadavg()
    start = time.perf_counter()
    runs: dict[str, list[dict]] = {k: [] for k in ROWS}
    with tempfile.TemporaryDirectory(prefix="backflip-train-data-") as tmp:
        t0 = time.perf_counter()
        folders = write_data(n, Path(tmp))
        write_s = time.perf_counter() - t0
        for r in range(args.rounds):
            for k in ROWS[r % 3:] + ROWS[:r % 3]:
                if k == "textbook":
                    runs[k].append(textbook_row(folders, args.threads))
                else:
                    runs[k].append(trainer_row(folders, k == "streamed", args.threads))
        diag = diagnostics(folders, n, args.threads)
    steps = n // BATCH
    samples = 2 * BATCH * steps
    med = {k: statistics.median(_kept(runs[k])) for k in ROWS}
    cpu = {k: statistics.median(_kept(runs[k], "cpu_s")) for k in ROWS}
    ratio_stream = med["streamed"] / med["in_memory"]
    ratio_textbook = med["textbook"] / med["streamed"]

    what = {"in_memory": "in memory: `train(ImageFolder(d).to_arrays() ...)`",
            "streamed": f"streamed: `train(ImageFolder(d) ...)`, workers={WORKERS}",
            "textbook": f"textbook: DataLoader per domain ({WORKERS} workers), "
                        "PIL per sample, separate forwards"}
    print(f"MNIST -> MNIST-M PNG folders, {n} + {n} samples, {steps} steps of {BATCH} + "
          f"{BATCH} per epoch, {EPOCHS} epochs x {args.rounds} round(s), median of epochs "
          f"2-{EPOCHS}, torch threads {args.threads}\n")
    print("| row | s / epoch | samples / s | CPU s / epoch | every epoch (s) |")
    print("|---|---|---|---|---|")
    for k in ROWS:
        all_s = ", ".join(f"{s:.2f}" for r in runs[k] for s in r["epoch_s"])
        print(f"| {what[k]} | {med[k]:.2f} | {samples / med[k]:.0f} | {cpu[k]:.2f} | {all_s} |")
    print()
    print("| ratio | value | target | met |")
    print("|---|---|---|---|")
    print(f"| streamed / in memory | {ratio_stream:.3f}x | <= 1.25x | "
          f"{'yes' if ratio_stream <= 1.25 else 'no'} |")
    print(f"| textbook / streamed | {ratio_textbook:.3f}x | > 1x | "
          f"{'yes' if ratio_textbook > 1 else 'no'} |")
    print(f"| CPU s: streamed / in memory, textbook / streamed | "
          f"{cpu['streamed'] / cpu['in_memory']:.3f}x, {cpu['textbook'] / cpu['streamed']:.3f}x"
          " | | |")
    ev = [e for k in ("in_memory", "streamed") for r in runs[k] for e in r["eval_s"]]
    print(f"\nper-epoch evaluation (subtracted above): median {statistics.median(ev):.2f} s; "
          f"train() set-up: in memory {runs['in_memory'][0]['setup_s']:.1f} s (+ "
          f"{runs['in_memory'][0]['read_s']:.1f} s to_arrays), streamed "
          f"{runs['streamed'][0]['setup_s']:.1f} s; PNG files written in {write_s:.1f} s")
    print(f"streamed path: ImageFolder item {diag['decode_us_per_sample']:.0f} us/sample "
          f"(textbook item {diag['textbook_item_us_per_sample']:.0f} us) in one process; the "
          f"trainer's loader alone: first batch after {diag['loader_first_batch_s']:.2f} s, "
          f"an epoch of batches in {diag['loader_epoch_s']:.2f} s "
          f"({diag['loader_samples_per_s']:.0f} samples/s, CPU "
          f"{diag['loader_cpu_s']:.2f} s with the workers); in-memory gather "
          f"{diag['in_memory_gather_us_per_step']:.0f} us/step")

    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train_data.json").write_text(json.dumps({
        "command": "bench/train_data.py" + (" --quick" if args.quick else "")
                   + f" --rounds {args.rounds} --threads {args.threads}",
        "samples_per_domain": n, "steps_per_epoch": steps, "batch": BATCH, "epochs": EPOCHS,
        "workers": WORKERS, "eval_limit": EVAL_LIMIT, "rounds": args.rounds,
        "threads": args.threads, "median_epoch_s": med, "median_cpu_s": cpu,
        "samples_per_s": {k: samples / v for k, v in med.items()},
        "ratio_streamed_vs_in_memory": ratio_stream, "target_streamed_vs_in_memory": 1.25,
        "ratio_textbook_vs_streamed": ratio_textbook, "target_textbook_vs_streamed": 1.0,
        "met": {"streamed_vs_in_memory": ratio_stream <= 1.25,
                "textbook_vs_streamed": ratio_textbook > 1.0},
        "runs": runs, "diagnostics": diag, "write_png_s": write_s,
        "total_s": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
