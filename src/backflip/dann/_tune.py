"""``tune(config, ...)``: a hyperparameter search that never looks at target labels (Optuna).

Each trial is one :func:`backflip.dann.train` run of the base config with the trial's
values (:mod:`backflip.dann._space`), in its own run folder ``out/trials/NNNN`` (NNNN
the Optuna trial number, unique over every worker of a study). Its objective is a
label-free criterion (:data:`backflip.dann.CRITERIA`) of the final epoch, the model the
run returns, in the criterion's direction. Target accuracy, where a labelled target
test set exists, is recorded beside it as an oracle and never reaches the sampler, the
pruner or the pick.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._optional import require
from backflip.dann._config import TrainConfig
from backflip.dann._selection import CRITERIA
from backflip.dann._space import (
    DEFAULT_CRITERION,
    DEFAULT_SPACE,
    IntRange,
    Range,
    Spec,
    check_space,
    draw,
    space_to_json,
)
from backflip.dann._train import TrainingStopped, train
from backflip.dann._tune_report import ORACLE, trials_table, write_atomic, write_json

__all__ = ["TuneResult", "tune"]

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
           "WAITING": "waiting"}


@dataclass
class TuneResult:
    """What a search found: the study, its trials and the pick.

    ``trials`` has one row per trial of the study (every worker's, so far): ``number``,
    ``state`` (complete, pruned, failed, or running in another worker), ``params``,
    ``value`` (the criterion tune picks by), each label-free criterion of the trial's
    last epoch, ``oracle_target_acc`` (target accuracy; ``None`` without a labelled
    target test set; never used to pick), ``epoch``, ``run`` (its folder) and, for a
    failed trial, ``stop`` and ``reason``. The ``best_*`` fields are ``None`` when no
    trial completed. :func:`tune`'s example makes one; its fields:

    >>> import dataclasses
    >>> [f.name for f in dataclasses.fields(TuneResult)][:5]
    ['study', 'criterion', 'space', 'trials', 'out']
    """

    study: Any  # the optuna.Study
    criterion: str
    space: dict[str, Spec]
    trials: list[dict[str, Any]]
    out: Path
    best_trial: int | None = None
    best_value: float | None = None
    best_config: TrainConfig | None = None
    best_out: Path | None = None
    best_model: torch.nn.Module | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def direction(self) -> str:
        """``"max"`` or ``"min"``: the criterion's direction (:data:`CRITERIA`)."""
        return CRITERIA[self.criterion]

    def table(self) -> str:
        """The Markdown table of every trial (what ``out/tune.md`` holds), the pick marked."""
        return trials_table(self.trials, list(self.space), self.criterion, self.best_trial)


class _EpochReport:
    # train()'s on_epoch for one trial: reports the criterion to Optuna after every epoch
    # and prunes (raises `pruned`) where the pruner says so; never in the first half of
    # the epochs, nor after the last one, whose value is the trial's own. Keeps the rows for the trial's record.
    def __init__(self, trial: Any, criterion: str, epochs: int, prune: bool,
                 pruned: type[BaseException]) -> None:
        self.trial, self.criterion, self.epochs = trial, criterion, epochs
        self.prune, self.pruned = prune, pruned
        self.rows: list[dict[str, Any]] = []

    def __call__(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        value, epoch = _number(row.get(self.criterion)), int(row["epoch"])
        if value is None:
            return
        self.trial.report(value, epoch)
        # never in the first half of the epochs (λ still ramps up, the lr is still high)
        if (self.prune and 2 * epoch >= self.epochs and epoch < self.epochs
                and self.trial.should_prune()):
            raise self.pruned(f"pruned after epoch {epoch}: {self.criterion} {value:.4g}")


def _number(value: Any) -> float | None:
    # A finite float, else None (JSON-safe).
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_arguments(config: Any, criterion: Any, trials: Any, seed: Any, storage: Any,
                     study_name: Any, model: Any, out: Any) -> Path:
    # Every argument of tune() but the space, before any work; returns the out folder.
    if not isinstance(config, TrainConfig):
        raise BackflipTypeError(f"config must be a TrainConfig; got {type(config).__name__}.")
    if criterion == "target_acc":
        raise BackflipValueError(
            "criterion 'target_acc' is target accuracy, which needs target labels: a search "
            "that picks by it is tuned on the test set, and its figure no longer says how "
            f"the method does without them. Pick by a label-free criterion: "
            f"{', '.join(CRITERIA)} (target accuracy is still reported, as an oracle).")
    if criterion not in CRITERIA:
        raise BackflipValueError(
            f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)} "
            f"(default {DEFAULT_CRITERION!r}).")
    if criterion in ("source_val_acc", "dev_risk") and config.val_fraction == 0:
        raise BackflipValueError(
            f"criterion {criterion!r} scores the held-out source validation set, and "
            "val_fraction is 0; set val_fraction (e.g. 0.1) or pick by target_entropy or snd.")
    for name, value, low, note in (
            ("trials", trials, 0 if storage else 1, "" if storage else
             " (0 only with a storage: it reads a shared study without adding trials)"),
            ("seed", seed, 0, "")):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BackflipValueError(f"{name} must be an int >= {low}{note}; got {value!r}.")
    if storage is not None and not isinstance(storage, str):
        raise BackflipTypeError(
            f"storage must be a database URL such as 'sqlite:///study.db' or None; got "
            f"{type(storage).__name__}.")
    if storage is not None and not study_name:
        raise BackflipValueError(
            f"storage {storage!r} needs a study_name (CLI: --study-name NAME): the name is "
            "how every worker finds the one study they share.")
    if isinstance(model, torch.nn.Module):
        raise BackflipTypeError(
            f"model must be a zero-argument callable that returns a fresh network (e.g. "
            f"model=lambda: DANN(...)), not a {type(model).__name__} instance: every trial "
            "would go on training the same weights.")
    if model is not None and not callable(model):
        raise BackflipTypeError(
            f"model must be a zero-argument callable returning a fresh network; got "
            f"{type(model).__name__}.")
    if model is not None and config.model is not None:
        raise BackflipValueError(
            f"tune() got model= and config.model {config.model!r}; pass one of them.")
    if config.resume:
        raise BackflipValueError(
            "config.resume is set, but every trial starts afresh; to continue a search, run "
            "tune again with the same storage and study_name.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BackflipValueError(
            "tune runs each trial in one process; instead of torchrun, start several tune "
            "workers on one storage and study_name.")
    if out is not None and config.out is not None and Path(out) != Path(config.out):
        raise BackflipValueError(
            f"tune() got out={str(out)!r} and config.out {config.out!r}; pass one of them.")
    folder = out if out is not None else config.out
    if folder is None:
        raise BackflipValueError(
            "tune writes one run folder per trial (out/trials/NNNN) and out/tune.json: pass "
            "out='runs/tune' (CLI: --out DIR).")
    folder = Path(folder).resolve()
    trial_dir = folder / "trials"
    if storage is None and trial_dir.is_dir() and any(trial_dir.iterdir()):
        raise BackflipValueError(
            f"{str(trial_dir)!r} already holds trials, which a new in-memory study would "
            "overwrite (its trials are numbered from 0); pass another out, or a storage and "
            "study_name to continue the study they belong to.")
    return folder


def _retry(what: Callable[[], Any], storage: str) -> Any:
    # Open an Optuna database, retrying while another worker creates its tables (the
    # first workers of a new study race to create them).
    sqlalchemy = require("sqlalchemy", extra="tune", purpose="tune(storage=...)")
    for attempt in range(6):
        try:
            return what()
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == 5:
                raise BackflipValueError(
                    f"storage {storage!r} could not be opened ({type(err).__name__}: "
                    f"{str(err).splitlines()[0]}). Pass a database URL such as "
                    "sqlite:///study.db, in a folder that exists.") from None
            time.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")


def _open_study(optuna: Any, storage: str | None, study_name: str | None, criterion: str,
                seed: int, prune: bool) -> Any:
    direction = "maximize" if CRITERIA[criterion] == "max" else "minimize"
    sampler = optuna.samplers.TPESampler(seed=seed)
    # the median rule: a trial whose criterion is worse after an epoch than the median of
    # the finished trials after that epoch stops, once 4 have finished
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=4) if prune
              else optuna.pruners.NopPruner())
    store = None
    if storage is not None:
        if "://" not in storage:
            raise BackflipValueError(
                f"storage {storage!r} is not a database URL; pass e.g. "
                f"'sqlite:///{storage}' (a file) or a postgresql:// / mysql:// URL.")
        engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
        store = _retry(lambda: optuna.storages.RDBStorage(storage, engine_kwargs=engine), storage)
    def create() -> Any:
        return optuna.create_study(storage=store, sampler=sampler, pruner=pruner,
                                   study_name=study_name or "backflip-tune",
                                   direction=direction, load_if_exists=True)

    study = create() if storage is None else _retry(create, storage)
    had = study.user_attrs.get("criterion")
    if had is not None and had != criterion:
        raise BackflipValueError(
            f"study {study.study_name!r} in {storage!r} picks by {had!r}, not {criterion!r}; "
            f"pass --criterion {had} to join it, or a new study_name.")
    if had is None:
        study.set_user_attr("criterion", criterion)
    return study


def _record(trial: Any, rows: list[dict[str, Any]]) -> None:
    # The trial's last epoch, as its row of the table shows it.
    last = rows[-1] if rows else {}
    trial.set_user_attr("epoch", int(last.get("epoch", 0)))
    trial.set_user_attr("criteria", {c: _number(last.get(c)) for c in CRITERIA})
    trial.set_user_attr("oracle_target_acc", _number(last.get("target_acc")))


def _suggest(trial: Any) -> Callable[[str, Spec], Any]:
    def suggest(name: str, spec: Spec) -> Any:
        if isinstance(spec, IntRange):
            return trial.suggest_int(name, spec.low, spec.high, log=spec.log)
        if isinstance(spec, Range):
            return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        return trial.suggest_categorical(name, list(spec))

    return suggest


def _run_trial(optuna: Any, study: Any, base: TrainConfig, space: dict[str, Spec],
               criterion: str, prune: bool, model: Callable[[], Any] | None,
               data: dict[str, Any], out: Path
               ) -> tuple[int, float | None, torch.nn.Module | None]:
    # One trial: ask, train, tell. Returns its number, and its value and model where it
    # completed (else None, None).
    fail = optuna.trial.TrialState.FAIL
    trial = study.ask()
    folder = out / "trials" / f"{trial.number:04d}"
    report: _EpochReport | None = None
    try:
        values = draw(space, base, _suggest(trial))
        config = TrainConfig.from_dict({**base.to_dict(), **values, "out": str(folder)})
        for key, value in (("run", str(folder)), ("config", config.to_dict()),
                           ("worker", f"{socket.gethostname()}:{os.getpid()}")):
            trial.set_user_attr(key, value)
        if folder.is_dir() and any(folder.iterdir()):
            raise BackflipValueError(
                f"the folder of trial {trial.number}, {str(folder)!r}, is not empty (another "
                "study wrote there); pass a new out for this study.")
        report = _EpochReport(trial, criterion, config.epochs, prune, optuna.TrialPruned)
        result = train(config, model=None if model is None else model(), **data,
                       on_epoch=report)
    except optuna.TrialPruned as why:
        _record(trial, [] if report is None else report.rows)
        trial.set_user_attr("reason", str(why))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return trial.number, None, None
    except TrainingStopped as stop:  # collapse or NaN: recorded, the study goes on
        _record(trial, stop.history)
        trial.set_user_attr("stop", stop.reason)
        trial.set_user_attr("reason", str(stop))
        study.tell(trial, state=fail)
        if stop.reason == "signal":  # the user asked to stop: the study stops too
            raise
        return trial.number, None, None
    except BaseException as err:
        trial.set_user_attr("reason", f"{type(err).__name__}: {err}")
        study.tell(trial, state=fail)
        raise
    _record(trial, result.history)
    value = _number(result.history[-1].get(criterion))
    if value is None:
        trial.set_user_attr("stop", "no criterion")
        trial.set_user_attr("reason", f"the final epoch has no finite {criterion} "
                                      f"({result.history[-1].get(criterion)!r})")
        study.tell(trial, state=fail)
        return trial.number, None, None
    study.tell(trial, value)
    return trial.number, value, result.model


def _rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        rows.append({"number": t.number, "state": _STATES.get(t.state.name, t.state.name.lower()),
                     "params": dict(t.params),
                     "value": _number(t.value) if t.state.name == "COMPLETE" else None,
                     **dict.fromkeys(CRITERIA), **attrs.get("criteria", {}),
                     "oracle_target_acc": attrs.get("oracle_target_acc"),
                     "epoch": attrs.get("epoch"), "run": attrs.get("run"),
                     "worker": attrs.get("worker"), "stop": attrs.get("stop"),
                     "reason": attrs.get("reason")})
    return rows


@contextlib.contextmanager
def _optuna_quiet(optuna: Any):
    # Optuna logs every trial at INFO; tune prints its own line (with progress) instead.
    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


def _line(row: dict[str, Any], criterion: str) -> str:
    # One trial in one line (printed after it, with config.progress).
    value = row[criterion]
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row["params"].items())
    return (f"trial {row['number']}: {row['state']}, {criterion} "
            f"{'–' if value is None else f'{value:.4g}'} ({params})")


def _mask(url: str | None) -> str | None:
    # The storage URL without its password (tune.json may be shared).
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url


def tune(config: TrainConfig, *, space: Mapping[str, Any] | None = None, trials: int = 20,
         criterion: str = DEFAULT_CRITERION, storage: str | None = None,
         study_name: str | None = None, seed: int = 0, prune: bool = True,
         model: Callable[[], torch.nn.Module] | None = None, source: Any = None,
         target: Any = None, target_test: Any = None,
         out: str | os.PathLike[str] | None = None) -> TuneResult:
    """Search hyperparameters by a label-free criterion; returns a :class:`TuneResult`.

    Runs ``trials`` trials (this process's; the study may hold more from other workers).
    A trial draws values from ``space`` (default :data:`DEFAULT_SPACE`; narrow or widen
    it as ``{**DEFAULT_SPACE, "lr": Range(1e-3, 1e-2, log=True)}``) with Optuna's TPE
    sampler seeded by ``seed``, trains ``config`` with those values into
    ``out/trials/NNNN``, and scores the final epoch's ``criterion``: ``source_val_acc``
    (max, the default), ``dev_risk`` (min), ``target_entropy`` (min) or ``snd`` (max), never target
    accuracy. ``prune=True`` reports the criterion after every epoch and stops a trial
    worse than the median of the finished trials at that epoch (Optuna's MedianPruner,
    after 4 finished trials; never in the first half of its epochs, while λ ramps up). A trial that stops on a collapse or a NaN loss
    (:class:`TrainingStopped`) is recorded as failed, with its reason, and the search
    goes on; a signal stops the search. In symbols, with ``c`` the criterion and
    ``θ_i(e)`` trial ``i``'s model after epoch ``e`` of ``E``: ``v_i = c(θ_i(E))``, the pick
    is ``argmin_i v_i`` over the complete trials (``argmax`` for a ``"max"`` criterion),
    and trial ``i`` is pruned after epoch ``e < E`` when ``c(θ_i(e))`` is worse than
    ``median_j c(θ_j(e))`` over the complete trials ``j``. Optuna: Akiba et al., KDD 2019;
    its TPE sampler: Bergstra et al., NeurIPS 2011.

    ``source``/``target``/``target_test`` and ``config.model`` reach :func:`train` as
    they are. ``model`` is a zero-argument callable returning a fresh network per trial
    (a module instance is refused); with a model of your own the default space leaves
    out ``hidden``, the width of the built-in mlp.

    ``storage=None`` keeps the study in memory. A database URL (``"sqlite:///study.db"``)
    with a ``study_name`` lets several processes share one study: each runs its own
    ``trials``, the trial numbers (and so the folders) never clash, and each worker
    should pass its own ``seed`` (two workers with one seed draw the same values at
    first). Writes ``out/tune.json`` and ``out/tune.md`` (every trial, every criterion,
    the oracle target accuracy where a labelled target test set exists, the pick).

    >>> import tempfile
    >>> cfg = TrainConfig(source="moons", target="moons-rotated", epochs=1, limit=64,
    ...                   batch_size=32, progress=False, plots=False, threads=1)
    >>> res = tune(cfg, space={"lr": Range(1e-3, 1e-1, log=True)}, trials=2,
    ...            out=tempfile.mkdtemp())
    >>> [row["state"] for row in res.trials], res.best_out.name in ("0000", "0001")
    (['complete', 'complete'], True)
    >>> res.best_value == max(row["source_val_acc"] for row in res.trials)
    True
    """
    # checks: every argument and the whole space, before any training
    out_dir = _check_arguments(config, criterion, trials, seed, storage, study_name, model, out)
    if space is None:
        own = model is not None or config.model is not None
        space = {k: v for k, v in DEFAULT_SPACE.items() if not (own and k == "hidden")}
    checked = check_space(space, config)
    if not isinstance(prune, bool):
        raise BackflipTypeError(f"prune must be True or False; got {prune!r}.")
    optuna = require("optuna", extra="tune", purpose="backflip.dann.tune")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "trials").mkdir(exist_ok=True)
    data = {"source": source, "target": target, "target_test": target_test}
    kept: tuple[int, float | None, torch.nn.Module | None] | None = None
    sign = 1.0 if CRITERIA[criterion] == "max" else -1.0
    with _optuna_quiet(optuna):
        # the study: in memory, or shared through the storage
        study = _open_study(optuna, storage, study_name, criterion, seed, prune)
        # the trials; the best model this process trained is kept, not reloaded
        for _ in range(trials):
            done = _run_trial(optuna, study, config, checked, criterion, prune, model, data,
                              out_dir)
            if done[1] is not None and (kept is None or sign * done[1] > sign * kept[1]):
                kept = done
            if config.progress:
                print(_line(next(r for r in _rows(study) if r["number"] == done[0]), criterion))
    # the pick, over every worker's finished trials
    result = TuneResult(study, criterion, checked, _rows(study), out_dir)
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        result.best_trial, result.best_value = best.number, float(best.value)
        result.best_config = TrainConfig.from_dict(best.user_attrs["config"])
        result.best_out = Path(best.user_attrs["run"])
        if kept is not None and kept[0] == best.number:
            result.best_model = kept[2]
        else:  # another worker's trial, or an earlier call's: from its checkpoint
            from backflip.dann._checkpoint import load_model

            result.best_model, _ = load_model(result.best_out / "checkpoint.pt",
                                              model=None if model is None else model())
    else:
        result.notes.append("no trial completed, so there is no pick; see each trial's reason "
                            "in tune.json.")
    _write(result, storage, trials)
    return result


def _write(result: TuneResult, storage: str | None, trials: int) -> None:
    # out/tune.json and out/tune.md (atomic: every worker writes them at its end).
    summary = {"criterion": result.criterion, "direction": result.direction,
               "study_name": result.study.study_name, "storage": _mask(storage),
               "trials_this_call": trials, "space": space_to_json(result.space),
               "best": None if result.best_trial is None else {
                   "trial": result.best_trial, "value": result.best_value,
                   "run": str(result.best_out), "config": result.best_config.to_dict()},
               "oracle": f"oracle_target_acc is the {ORACLE}", "notes": result.notes,
               "trials": result.trials}
    write_json(result.out / "tune.json", summary)
    pick = ("no trial completed" if result.best_trial is None else
            f"trial {result.best_trial} ({result.criterion} {result.best_value:.4g}), "
            f"run folder {result.best_out}")
    write_atomic(result.out / "tune.md", (
        f"# Label-free tuning: {result.study.study_name}\n\n"
        f"Picked by `{result.criterion}` of the final epoch ({result.direction}): {pick}. "
        "Target accuracy, where shown, uses target labels: it is an oracle for reading the "
        "table, never used to pick.\n\n" + result.table() + "\n"))
