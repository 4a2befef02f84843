"""``train(config, model=..., source=..., target=...)``: one run, its loop read top to bottom.

The phases around the loop live in their own modules: the inputs and their checks
(``_inputs``, ``_contract``), the set-up (``_prepare``), the data feed (``_feed``), the
methods' objectives (``_methods``, over the pure losses of ``_losses``), evaluation and
the collapse guard (``_evaluate``), the run folder (``_run_folder``) and the log
(``_progress``).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backflip._errors import BackflipError
from backflip.dann._config import TrainConfig
from backflip.dann._evaluate import collapsed, evaluate
from backflip.dann._feed import Feed, epoch_plan
from backflip.dann._methods import SUMS
from backflip.dann._prepare import Setup, prepare, restore
from backflip.dann._progress import Progress
from backflip.dann._selection import pick
from backflip.schedules import dann_lambda, dann_learning_rate

__all__ = ["TrainResult", "TrainingStopped", "train"]


class TrainingStopped(BackflipError, RuntimeError):
    """Training stopped early; the last good checkpoint (if any) was kept.

    ``reason`` is ``"nan"`` (non-finite loss), ``"collapse"`` (the label head fell back
    to chance after it had learned) or ``"signal"`` (SIGINT/SIGTERM). ``history`` holds
    the per-epoch metrics rows of the epochs completed before the stop (for a collapse, the
    collapsed epoch last; a NaN or a signal mid-epoch adds no row for the unfinished epoch).

    >>> stop = TrainingStopped("loss is NaN at epoch 2", "nan", history=[{"epoch": 1}])
    >>> (str(stop), stop.reason, stop.checkpoint, len(stop.history))
    ('loss is NaN at epoch 2', 'nan', None, 1)
    """

    def __init__(self, message: str, reason: str, checkpoint: Path | None = None,
                 history: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.checkpoint = checkpoint
        self.history = list(history or [])


@dataclass
class TrainResult:
    """What a run produced: the model, per-epoch history and what each criterion picks.

    >>> res = train(TrainConfig(source="moons", target="moons-rotated", epochs=1, limit=64,
    ...                         batch_size=32, progress=False, plots=False))
    >>> (len(res.history), res.out, res.target_accuracy == res.history[-1]["target_acc"])
    (1, None, True)
    >>> sorted(res.selection)  # the epoch each label-free criterion picks
    ['dev_risk', 'snd', 'source_val_acc', 'target_entropy']
    """

    config: TrainConfig
    model: torch.nn.Module
    history: list[dict[str, Any]]
    selection: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Path | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each domain was
    notes: list[str] = field(default_factory=list)  # what the run said about itself

    @property
    def target_accuracy(self) -> float | None:
        """Target test accuracy after the final epoch (the headline; never selected).

        ``None`` when the run had no labelled target test set.
        """
        value = self.history[-1]["target_acc"]
        return None if value is None else float(value)


def _fold(acc: dict[str, float], pending: torch.Tensor) -> None:
    # Add the device-side running sums into ``acc`` (one host sync) and reset them.
    for key, value in zip(SUMS, pending.tolist(), strict=True):
        acc[key] += value
    pending.zero_()


@contextlib.contextmanager
def _signals_stop(stop: list[int]):
    # SIGINT/SIGTERM only note the signal: the loop finishes its step, saves and stops.
    old = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda s, _f: stop.append(s))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def train(config: TrainConfig, *, model: torch.nn.Module | None = None, source: Any = None,
          target: Any = None, target_test: Any = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train one model as ``config`` says; returns a :class:`TrainResult`.

    ``model`` is your network (a :class:`backflip.dann.DANN` over your modules; the
    contract, checked before the first step, is :func:`backflip.dann.check_model`'s), else
    the one ``config.model`` builds, or a built-in network for the data. ``source``
    (labelled), ``target`` (labels used only by ``target-only``) and ``target_test``
    (labelled, scores target accuracy) are :class:`~backflip.data.ArrayDataset` s,
    :class:`~backflip.data.ImageFolder` s or any map-style ``Dataset`` (streamed); pass
    none of them to read the data sets named in ``config``, never some. Every input is
    checked before the first step. Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs
    DistributedDataParallel over shards of each global batch; rank 0 writes.
    ``on_epoch(row)`` is called after every epoch (its checkpoint written) with the
    epoch's metrics; an exception it raises ends the run (its checkpoint kept).

    ``config.method`` picks the loss (:mod:`backflip.dann._methods` writes each one out):
    ``L_y`` plus the method's transfer term weighted by ``λ(p)``, plus ``w * mean_i
    H(softmax(z_i))`` over the target logits when ``config.target_entropy = w > 0``
    (entropy minimisation, Grandvalet & Bengio 2004) and ``v * L_vat`` (virtual
    adversarial training on the target batch, radius ``config.vat_eps``;
    :func:`backflip.dann.vat_loss`) when ``config.target_vat = v > 0``; dann with both
    terms is VADA (Shu et al. 2018).

    >>> cfg = TrainConfig(source="moons", target="moons-rotated", epochs=1, limit=64,
    ...                   batch_size=32, progress=False)
    >>> len(train(cfg).history)
    1
    """
    # inputs and set-up: every check first, then the folder, the process group, the model
    run = prepare(config, model, source, target, target_test)
    cfg, rt, folder, method = run.config, run.runtime, run.folder, run.method
    log = Progress(cfg.progress, rt.main)
    for note in run.notes:
        log.note(note)
    # resume: weights, optimizer, scaler, RNG states and position, exactly
    start_epoch, start_step, history, acc = restore(run)
    if acc is not None and "elapsed" in acc:  # the epoch's time so far, on this clock
        acc["t0"] = time.perf_counter() - acc.pop("elapsed")
    folder.write_json("config.json", run.describe())
    # data: in-memory batches gather by the plans below; streamed ones read ahead
    feed = Feed((run.inputs.source, run.inputs.target), batch_size=cfg.batch_size,
                steps=run.steps, epochs=cfg.epochs, start_epoch=start_epoch,
                start_step=start_step, gen_state=run.gen.get_state(),
                shard=rt.shard(cfg.batch_size), device=rt.device,
                memory_format=run.memory_format, workers=cfg.workers,
                seed=cfg.seed * 1_000_003 + start_epoch * run.steps + start_step)
    stop: list[int] = []
    try:
        with _signals_stop(stop):
            for epoch in range(start_epoch, cfg.epochs):
                # plan: this epoch's source and target indices, from the run's generator
                epoch_gen_state = run.gen.get_state()
                plans = [epoch_plan(len(d), run.steps, cfg.batch_size, run.gen)
                         for d in (run.inputs.source, run.inputs.target)]
                if acc is None or start_step == 0:
                    acc = {**dict.fromkeys((*SUMS, "n"), 0.0), "t0": time.perf_counter()}
                pending = torch.zeros(len(SUMS), dtype=torch.float64, device=rt.device)
                log.start_epoch(epoch, cfg.epochs, start_step, run.steps)
                for step, ((xs, ys), (xt, yt)) in zip(range(start_step, run.steps),
                                                      feed.epoch(plans, start_step), strict=True):
                    # schedule: progress p drives the learning rate and λ
                    lr, lambd = _schedule(run, epoch * run.steps + step)
                    # forward and losses: the method's (autocast-safe)
                    with torch.autocast(rt.device.type, dtype=run.amp_dtype, enabled=cfg.amp):
                        out = run.model(xs, ys, xt, yt, epoch * run.steps + step)
                    if not torch.isfinite(out["loss"]):
                        raise _stopped_nan(run, out["loss"].item(), epoch, step, lr, lambd,
                                           history)
                    # backward and step
                    run.opt.zero_grad(set_to_none=True)
                    run.scaler.scale(out["loss"]).backward()
                    run.scaler.step(run.opt)
                    run.scaler.update()
                    # log: running sums stay on the device (no host sync per step), folded
                    # into the epoch's sums every 10 steps, at a stop and at the epoch's end
                    pending += out["sums"]
                    acc["n"] += cfg.batch_size // rt.world
                    if step % 10 == 0:
                        _fold(acc, pending)
                        log.update(step + 1, loss=f"{acc['loss'] / acc['n']:.3f}",
                                   acc=f"{acc['correct'] / acc['n']:.3f}",
                                   **({"lambd": f"{lambd:.3f}"} if method.has_transfer else {}))
                    if stop:  # a signal: save where we are, then stop
                        _fold(acc, pending)
                        log.end_epoch(None, cfg.epochs)
                        raise _stopped_signal(run, stop[0], epoch, step, epoch_gen_state,
                                              history, acc)
                start_step = 0
                _fold(acc, pending)
                # metrics: the epoch's sums over every process, then evaluation
                row = _epoch_row(run, epoch, lr, lambd, acc)
                fell = collapsed(history, row, run.inputs.num_classes)
                history.append(row)
                acc = None
                # log and checkpoint (rank 0); a collapsed epoch is logged, never checkpointed
                folder.write_metrics(history)
                log.end_epoch(row, cfg.epochs)
                if fell:
                    raise _stopped_collapse(run, row, epoch, lr, lambd, history)
                if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                    folder.save(run.state(epoch + 1, 0, run.gen.get_state(), history, None))
                if run.writer is not None:
                    for k, v in row.items():
                        if isinstance(v, float):
                            run.writer.add_scalar(k, v, epoch + 1)
                if on_epoch is not None:
                    on_epoch(row)
    finally:
        feed.close()
        if run.writer is not None:
            run.writer.close()
    result = TrainResult(cfg, run.raw.eval(), history, pick(history), folder.path,
                         run.inputs.records, run.notes)
    folder.write_json("result.json", {"target_accuracy": result.target_accuracy,
                                      "selection": result.selection, "data": result.data,
                                      "notes": result.notes})
    if cfg.plots and folder.path is not None and rt.main:
        from backflip.dann._report import write_report

        write_report(result, run.ev)
    return result


def _schedule(run: Setup, global_step: int) -> tuple[float, float | None]:
    # Progress p = step / total sets this step's learning rate and λ; returns both
    # (λ None for a method without a transfer term).
    cfg, p = run.config, global_step / run.total
    lr = dann_learning_rate(p, cfg.lr) if cfg.lr_schedule == "dann" else cfg.lr
    for group in run.opt.param_groups:
        group["lr"] = lr
    if not run.method.has_transfer:
        return lr, None
    lambd = dann_lambda(p, cfg.gamma, cfg.lambd_peak)
    run.adapted.set_lambd(lambd)
    return lr, lambd


def _epoch_row(run: Setup, epoch: int, lr: float, lambd: float | None,
               acc: dict[str, float]) -> dict[str, Any]:
    # One epoch's metrics: the training sums over every process, then the evaluation.
    cfg = run.config
    keys = (*SUMS, "n")
    totals = run.runtime.all_reduce(torch.tensor([acc[k] for k in keys], dtype=torch.float64))
    s = dict(zip(keys, totals.tolist(), strict=True))
    n = s["n"]
    return {"epoch": epoch + 1, "lambd": lambd, "lr": lr, "loss": s["loss"] / n,
            "loss_y": s["loss_y"] / n,
            "loss_transfer": s["loss_transfer"] / n if run.method.has_transfer else None,
            # the unweighted target terms, None where their weight is 0
            "loss_ent": s["loss_ent"] / n if cfg.target_entropy else None,
            "loss_vat": s["loss_vat"] / n if cfg.target_vat else None,
            "train_acc": s["correct"] / n,
            "domain_acc": s["domain_correct"] / n if run.method.has_domain_head else None,
            **evaluate(run.raw, run.ev), "seconds": time.perf_counter() - acc["t0"]}


def _stopped_nan(run: Setup, value: float, epoch: int, step: int, lr: float,
                 lambd: float | None, history: list[dict[str, Any]]) -> TrainingStopped:
    kept, kept_text = run.folder.last_good()
    at = f"lr {lr:.3g}" + (f", λ {lambd:.3g}" if lambd is not None else "")
    return TrainingStopped(
        f"the loss became {value} at epoch {epoch + 1}, step {step + 1} ({at}); training "
        "stopped. " + kept_text + "Lower --lr, turn off --amp, or check the inputs for NaN/inf.",
        "nan", kept, history)


def _stopped_signal(run: Setup, signum: int, epoch: int, step: int,
                    epoch_gen_state: torch.Tensor, history: list[dict[str, Any]],
                    acc: dict[str, float]) -> TrainingStopped:
    folder = run.folder
    path = folder.save(run.state(epoch, step + 1, epoch_gen_state, history, {
        **{k: v for k, v in acc.items() if k != "t0"}, "elapsed": time.perf_counter() - acc["t0"]}))
    where = (f"checkpoint saved to {str(path)!r}; continue with --resume." if path else
             "no checkpoint written (no --out folder was given)." if folder.path is None else
             "rank 0 writes the checkpoint.")
    return TrainingStopped(f"stopped by signal {signal.Signals(signum).name} at epoch "
                           f"{epoch + 1}, step {step + 1}; " + where, "signal", path, history)


def _stopped_collapse(run: Setup, row: dict[str, Any], epoch: int, lr: float,
                      lambd: float | None, history: list[dict[str, Any]]) -> TrainingStopped:
    kept, kept_text = run.folder.last_good()
    chance = 1 / run.inputs.num_classes
    best = max(r["train_acc"] for r in history[:-1])
    at = (f"λ {lambd:.3g}, " if lambd is not None else "") + f"lr {lr:.3g}"
    return TrainingStopped(
        f"training collapsed in epoch {epoch + 1}: the label head's training accuracy fell "
        f"to {row['train_acc']:.3f} (chance {chance:.3f}) after reaching {best:.3f}, so the "
        f"features no longer separate the classes ({at}). " + kept_text
        + "Lower --lr or --lambd-max, lower --gamma (a slower λ ramp), or use --arch mnist-bn.",
        "collapse", kept, history)
