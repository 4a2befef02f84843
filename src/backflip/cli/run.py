"""``backflip run EXPERIMENT``: every method over seeds; table, results.json, report.md, plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backflip run``."""
    from backflip.dann._config import METHODS
    from backflip.dann._experiments import EXPERIMENTS

    names = " | ".join((*EXPERIMENTS, "composite-zero"))
    p = sub.add_parser(
        "run", help=f"run a preset experiment ({names})",
        description="Train source-only, dann and target-only (an upper bound that uses "
        "target labels) for each seed; print a table of final-epoch target accuracy "
        "(mean +- std) and write DIR/results.json, DIR/report.md and plots.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT",
                   help=names)
    p.add_argument("--quick", action="store_true", help="fewer epochs and samples (minutes)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    p.add_argument("--out", default=None, help="output folder (default runs/EXPERIMENT)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps (default cpu)")
    p.add_argument("--methods", default="source-only,dann,target-only",
                   help="comma-separated methods to run (default source-only,dann,target-only; "
                   f"any of {', '.join(METHODS)}; "
                   "also dann+entropy (dann with --target-entropy 0.1), dann+vat (dann with "
                   "--target-vat and --vat-eps set per preset), and entropy and vat (the same "
                   "without the adversarial term, --lambd-max 0); composite-zero always runs "
                   "its two settings)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep in the same --out: finished runs are "
                   "read back from their checkpoints, the interrupted one continues exactly, "
                   "the rest start (same options as the first call)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    p.set_defaults(func=run_run)


def run_run(args: argparse.Namespace) -> int:
    """Run the experiment and print its table."""
    from backflip._optional import APPS, require

    for module in APPS:  # before any work is done (torch last: a miss fails fast)
        require(module, extra="apps", purpose="backflip run")

    from backflip._errors import BackflipValueError
    from backflip.cli.train import report_stop
    from backflip.dann import RUN_METHODS, TrainingStopped, run_experiment, table

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in RUN_METHODS]
    if unknown or not methods:
        raise BackflipValueError(
            f"--methods {args.methods!r}: unknown or empty method list {unknown}; choose "
            f"among {', '.join(RUN_METHODS)}, comma-separated (e.g. --methods source-only,dann)."
        )
    out = args.out or f"runs/{args.experiment}"
    try:
        results = run_experiment(args.experiment, quick=args.quick, seeds=args.seeds, out=out,
                                 device=args.device, progress=args.progress, methods=methods,
                                 resume=args.resume)
    except TrainingStopped as stop:  # NaN or signal: the finished runs are summarised
        return report_stop(stop)
    if args.experiment == "composite-zero":
        print((Path(out) / "report.md").read_text(), end="")
    else:
        print(table(results), end="")
    print(f"wrote {out}/results.json, {out}/report.md and plots")
    return 0
