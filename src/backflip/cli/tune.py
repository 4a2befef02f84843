"""``backflip tune``: a hyperparameter search picked without target labels (every TrainConfig flag)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backflip tune``; every TrainConfig field is a ``--flag`` of the base config."""
    from backflip.dann._config import add_config_arguments
    from backflip.dann._selection import CRITERIA
    from backflip.dann._space import DEFAULT_CRITERION

    p = sub.add_parser(
        "tune", help="search hyperparameters by a label-free criterion (Optuna)",
        description="Train --trials runs of the base config (the TrainConfig flags below) "
        "with values drawn from --space, each in its own run folder --out/trials/NNNN, and "
        "pick the one whose final epoch scores best on a label-free --criterion. Target "
        "accuracy is shown as an oracle, never used to pick. Writes --out/tune.json and "
        "--out/tune.md. Several workers share one study through --storage and "
        "--study-name (give each its own --seed-tune). Needs optuna: pip install "
        '"backflip[tune]".',
    )
    add_config_arguments(p)
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, default=20,
                   help="trials this process runs (default 20; a shared study adds every "
                   "worker's)")
    g.add_argument("--criterion", default=DEFAULT_CRITERION, metavar="NAME",
                   help=f"the label-free criterion of the final epoch to pick by: "
                   f"{' | '.join(f'{k} ({v})' for k, v in CRITERIA.items())} (default "
                   f"{DEFAULT_CRITERION})")
    g.add_argument("--space", default=None, metavar="SPEC",
                   help="what to search, comma-separated: NAME=A|B (choices) or "
                   "NAME=LOW:HIGH[:int][:log] (a range), e.g. "
                   "'lr=1e-4:1e-1:log,method=dann|mdd,hidden=32:256:int:log'; the entry "
                   "'default' brings the default space, which later entries change "
                   "(default: the default space, backflip.dann.DEFAULT_SPACE)")
    g.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna database shared by several workers, e.g. sqlite:///study.db "
                   "(default: in memory)")
    g.add_argument("--study-name", default=None, metavar="NAME",
                   help="the study's name in --storage (needed with it)")
    g.add_argument("--seed-tune", type=int, default=0, metavar="N",
                   help="seed of the sampler (default 0; --seed stays the trials' own seed); "
                   "give each worker of a shared study its own")
    g.add_argument("--no-prune", dest="prune", action="store_false",
                   help="run every trial to its last epoch (default: the median rule stops "
                   "trials that are behind after an epoch)")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    """Run the search; prints the table of trials and the pick (exit 1 when none completed)."""
    from backflip.cli.train import report_stop
    from backflip.dann import TrainingStopped, config_from_args, tune
    from backflip.dann._space import parse_space

    space = None if args.space is None else parse_space(args.space)
    config = config_from_args(args)
    try:
        result = tune(config, space=space, trials=args.trials, criterion=args.criterion,
                      storage=args.storage, study_name=args.study_name, seed=args.seed_tune,
                      prune=args.prune)
    except TrainingStopped as stop:  # a signal: the finished trials are in the study
        return report_stop(stop)
    print(result.table())
    if result.best_trial is None:
        print(f"no trial completed; each trial's reason is in {result.out / 'tune.json'}")
        return 1
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in result.study.best_trial.params.items())
    print(f"pick: trial {result.best_trial}, {result.criterion} {result.best_value:.4g} "
          f"({result.direction}): {params}")
    print(f"run folder: {result.best_out}; all trials: {result.out / 'tune.md'}, "
          f"{result.out / 'tune.json'}")
    return 0
