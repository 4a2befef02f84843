"""``backflip train``: one DANN / source-only / target-only run (flags built from TrainConfig)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backflip.dann import TrainingStopped


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backflip train``; every TrainConfig field is a ``--flag``."""
    from backflip.dann._config import add_config_arguments

    p = sub.add_parser(
        "train", help="train one model (source-only, dann or target-only)",
        description="Train one model on labelled SOURCE and unlabelled TARGET data. The run "
        "folder (--out) gets config.json, metrics.jsonl, checkpoint.pt and result.json. "
        "Works under torchrun --nproc-per-node N -m backflip train ... (DDP).",
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
        print(f"{config.method} {config.source} -> {config.target}: target accuracy "
              f"{result.target_accuracy:.4f} (final epoch)")
        for name, sel in result.selection.items():
            print(f"  {name} would pick epoch {sel['epoch']}: target accuracy "
                  f"{sel['target_acc']:.4f}")
    return 0
