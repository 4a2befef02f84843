"""The composite-zero experiment: a main head and an ``AdversarialHead`` on shared features.

Images are sums of two MNIST digits, labelled ``y = 1`` if one of them is a zero. A main
head predicts ``y``; a second head predicts the complement label ``1 - y`` from the same
features, once through a GRL (``AdversarialHead``: the features are pushed to hide what
the second head needs) and once without (the control: both heads cooperate). Both
heads' test accuracy is recorded per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backflip import data
from backflip._optional import require
from backflip.dann._models import AdversarialHead
from backflip.dann._progress import Progress
from backflip.dann._run_folder import check_out
from backflip.dann._runtime import check_device
from backflip.schedules import dann_lambda

__all__ = ["run_composite_zero"]


def _net(reverse: bool) -> nn.ModuleDict:
    features = nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    )
    head = lambda: nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 2))  # noqa: E731
    return nn.ModuleDict({"features": features, "main": head(),
                          "adversary": AdversarialHead(head(), reverse=reverse)})


def _one(train_ds, test_ds, reverse: bool, epochs: int, seed: int, device: torch.device,
         progress: bool, batch: int = 128):
    torch.manual_seed(seed)
    net = _net(reverse).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.as_tensor(train_ds.x, device=device), torch.as_tensor(train_ds.y, device=device)
    xt, yt = torch.as_tensor(test_ds.x, device=device), torch.as_tensor(test_ds.y, device=device)
    gen = torch.Generator().manual_seed(seed)
    steps = len(x) // batch
    log = Progress(progress)
    rows = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)[: steps * batch].view(steps, batch)
        order = order.to(device)
        net.train()
        desc = f"{'grl' if reverse else 'no-grl'} seed {seed} epoch {epoch + 1}/{epochs}"
        log.start_epoch(epoch, epochs, 0, steps, desc)
        for step in range(steps):
            # λ follows the paper's schedule; the adversary learns the complement label
            if reverse:
                net["adversary"].grl.set_lambd(dann_lambda((epoch * steps + step) /
                                                           (epochs * steps)))
            f = net["features"](x[order[step]])
            yb = y[order[step]]
            loss = F.cross_entropy(net["main"](f), yb) + \
                F.cross_entropy(net["adversary"](f), 1 - yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 10 == 0:
                log.update(step + 1)
        net.eval()
        with torch.no_grad():
            f = net["features"](xt)
            main = (net["main"](f).argmax(1) == yt).float().mean().item()
            adv = (net["adversary"](f).argmax(1) == 1 - yt).float().mean().item()
        rows.append({"epoch": epoch + 1, "main_acc": main, "adversary_acc": adv})
        log.line(f"{desc}: main head {main:.4f}, adversary {adv:.4f} (test accuracy)")
    return rows


def run_composite_zero(*, quick: bool = False, seeds: int = 1, out: str | Path = "runs",
                       root: str | None = None, limit: int | None = None,
                       device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train with and without the GRL for each seed; write results.json, report.md, a plot.

    results.json: ``{"experiment": "composite-zero", "methods": {"no-grl" | "grl":
    {"main_accuracy": {"mean", "std", "runs"}, "adversary_accuracy": {...},
    "history": [...]}}}`` (final-epoch test accuracy of each head). ``out`` is checked
    to be writable before any work.
    """
    # the plot comes after training (and the bars during it): check first
    for module in (*(("tqdm",) if progress else ()), "matplotlib"):
        require(module, purpose="backflip run composite-zero")
    check_device(device)
    out = check_out(str(out))
    dev = torch.device(device)
    torch.set_num_threads(1)
    n = limit or (6000 if quick else 30000)
    train_ds = data.load("composite-zero", "train", root=root, limit=n)
    test_ds = data.load("composite-zero", "test", root=root, limit=min(n, 2000))
    epochs = 2 if quick else 5
    results: dict[str, Any] = {"experiment": "composite-zero", "quick": quick, "methods": {}}
    for name, reverse in (("no-grl", False), ("grl", True)):
        runs = [_one(train_ds, test_ds, reverse, epochs, seed, dev, progress)
                for seed in range(seeds)]
        stat = lambda k, r=runs: {  # noqa: E731
            "mean": float(np.mean([h[-1][k] for h in r])),
            "std": float(np.std([h[-1][k] for h in r])), "runs": [h[-1][k] for h in r]}
        results["methods"][name] = {"main_accuracy": stat("main_acc"),
                                    "adversary_accuracy": stat("adversary_acc"),
                                    "history": runs[0]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from backflip.dann._plots import _pyplot

    plt = _pyplot("backflip run composite-zero")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, style in (("no-grl", "--"), ("grl", "-")):
        h = results["methods"][name]["history"]
        ep = [r["epoch"] for r in h]
        ax.plot(ep, [r["main_acc"] for r in h], style, label=f"main head ({name})")
        ax.plot(ep, [r["adversary_acc"] for r in h], style, label=f"complement head ({name})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.savefig(out / "heads.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    lines = ["# backflip run composite-zero" + (" --quick" if quick else ""), "",
             "| run | main head accuracy | complement head accuracy |", "|---|---|---|"]
    for name, r in results["methods"].items():
        m, a = r["main_accuracy"], r["adversary_accuracy"]
        lines.append(f"| {name} | {m['mean']:.4f} +- {m['std']:.4f} | "
                     f"{a['mean']:.4f} +- {a['std']:.4f} |")
    (out / "report.md").write_text("\n".join([*lines, "", "![heads.png](heads.png)", ""]))
    return results
