"""``backflip train``: one run of any method (--method), flags built from TrainConfig."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backflip.dann import TrainingStopped


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backflip train``; every TrainConfig field is a ``--flag``."""
    from backflip.dann._config import add_config_arguments

    p = sub.add_parser(
        "train", help="train one model with any --method (source-only, dann, cdan, mdd, mcc, coral, ...)",
        description="Train one model on labelled SOURCE and unlabelled TARGET data: built-in "
        "names, or your own files (.npz with keys x and y, .npy of x, .csv with a label "
        "column, a folder with one sub-folder of images per class), with a built-in network "
        "or your own (--model MODULE:FUNCTION). The run folder (--out) gets config.json, "
        "metrics.jsonl, checkpoint.pt, result.json, report.md and plots. Works under "
        "torchrun --nproc-per-node N -m backflip train ... (DDP).",
    )
    add_config_arguments(p)
    p.set_defaults(func=run_train)


def report_stop(stop: TrainingStopped) -> int:
    """Print a TrainingStopped's message; the exit code: 130 for a signal, else 1."""
    import sys

    print(f"backflip: {stop}", file=sys.stderr)
    return 130 if stop.reason == "signal" else 1


def run_train(args: argparse.Namespace) -> int:
    """Run it; prints the final target accuracy and what each selection criterion picks."""
    from backflip.dann import TrainingStopped, config_from_args, train

    config = config_from_args(args)
    try:
        result = train(config)
    except TrainingStopped as stop:
        return report_stop(stop)
    import os

    if os.environ.get("RANK", "0") == "0":
        acc = result.target_accuracy
        src, tgt = result.data["source"]["name"], result.data["target"]["name"]
        print(f"{config.method} {src} -> {tgt}: target accuracy "
              + ("not scored (no labelled target test set)" if acc is None else f"{acc:.4f}")
              + " (final epoch)")
        for name, sel in result.selection.items():
            then = sel["target_acc"]
            print(f"  {name} would pick epoch {sel['epoch']}"
                  + ("" if then is None else f": target accuracy {then:.4f}"))
        if result.out is not None:
            print(f"run folder: {result.out} (config.json, metrics.jsonl, checkpoint.pt, "
                  "result.json" + (", report.md and plots)" if config.plots else ")"))
    return 0
