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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backflip._errors import BackflipError
from backflip.dann._config import TrainConfig
from backflip.dann._evaluate import collapsed, evaluate
from backflip.dann._feed import Feed, epoch_plan
from backflip.dann._methods import OBJECTIVES, SUMS, Batch, StepContext
from backflip.dann._prepare import prepare, restore
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


def _vat_noise(seed: int, step: int, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    # The VAT directions of one global step, drawn from (seed, step) alone: a resumed run
    # and every process of a distributed one draw the same, and the global RNG is untouched.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randn((batch, *shape), generator=gen)


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
          target: Any = None, target_test: Any = None) -> TrainResult:
    """Train one model as ``config`` says; returns a :class:`TrainResult`.

    ``model`` is your network (a :class:`backflip.dann.DANN` over your modules; the
    contract, checked before the first step, is :func:`backflip.dann.check_model`'s), else
    the one ``config.model`` builds, or a built-in network for the data. ``source`` (labelled), ``target`` (labels used only by
    ``target-only``) and ``target_test`` (labelled, scores target accuracy) are
    :class:`~backflip.data.ArrayDataset` s, :class:`~backflip.data.ImageFolder` s or any
    map-style ``Dataset`` (streamed); pass none of them to read the data sets named in
    ``config``, never some. Every input is checked before the first step. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) it runs DistributedDataParallel over shards of each
    global batch; rank 0 writes.

    The ``dann`` loss of one step is ``L_y + L_d`` (``L_d`` reaches the features through
    the GRL, times -λ), plus ``w * mean_i H(softmax(z_i))`` over the target logits ``z_i``
    when ``config.target_entropy = w > 0`` (entropy minimisation, Grandvalet & Bengio 2004),
    plus ``v * L_vat`` (virtual adversarial training on the target batch, radius
    ``config.vat_eps``; :func:`backflip.dann.vat_loss`) when ``config.target_vat = v > 0``;
    both terms together are VADA (Shu et al. 2018).

    >>> cfg = TrainConfig(source="moons", target="moons-rotated", epochs=1, limit=64,
    ...                   batch_size=32, progress=False)
    >>> len(train(cfg).history)
    1
    """
    # inputs and set-up: every check first, then the folder, the process group, the model
    run = prepare(config, model, source, target, target_test)
    cfg, rt, net, folder = run.config, run.runtime, run.raw, run.folder
    log = Progress(cfg.progress, rt.main)
    for note in run.notes:
        log.note(note)
    # resume: weights, optimizer, scaler, RNG states and position, exactly
    start_epoch, start_step, history, acc = restore(run)
    if acc is not None and "elapsed" in acc:  # the epoch's time so far, on this clock
        acc["t0"] = time.perf_counter() - acc.pop("elapsed")
    folder.write_json("config.json", run.describe())
    shard, local = rt.shard(cfg.batch_size), cfg.batch_size // rt.world
    ctx = StepContext(run.model, net, cfg, lambda step, shape: _vat_noise(
        cfg.seed, step, cfg.batch_size, shape)[shard])
    objective, grl = OBJECTIVES[cfg.method], getattr(net, "grl", None)
    # data: in-memory batches gather by the plans below; streamed ones read ahead
    feed = Feed((run.inputs.source, run.inputs.target), batch_size=cfg.batch_size,
                steps=run.steps, epochs=cfg.epochs, start_epoch=start_epoch,
                start_step=start_step, gen_state=run.gen.get_state(), shard=shard,
                device=rt.device, memory_format=run.memory_format, workers=cfg.workers,
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
                    p = (epoch * run.steps + step) / run.total
                    lr = dann_learning_rate(p, cfg.lr) if cfg.lr_schedule == "dann" else cfg.lr
                    for group in run.opt.param_groups:
                        group["lr"] = lr
                    lambd = dann_lambda(p, cfg.gamma, cfg.lambd_max)
                    if grl is not None:
                        grl.set_lambd(lambd)
                    # forward and losses: the method's objective (logits in, autocast-safe)
                    with torch.autocast(rt.device.type, dtype=run.amp_dtype, enabled=cfg.amp):
                        out = objective(ctx, Batch(xs, ys, xt, yt, epoch * run.steps + step))
                    if not torch.isfinite(out.loss):
                        kept, kept_text = folder.last_good()
                        raise TrainingStopped(
                            f"the loss became {out.loss.item()} at epoch {epoch + 1}, step "
                            f"{step + 1} (lr {lr:.3g}, λ {lambd:.3g}); training stopped. "
                            + kept_text
                            + "Lower --lr, turn off --amp, or check the inputs for NaN/inf.",
                            "nan", kept, history)
                    # backward and step
                    run.opt.zero_grad(set_to_none=True)
                    run.scaler.scale(out.loss).backward()
                    run.scaler.step(run.opt)
                    run.scaler.update()
                    # log: running sums stay on the device (no host sync per step), folded
                    # into the epoch's sums every 10 steps, at a stop and at the epoch's end
                    pending += out.sums()
                    acc["n"] += local
                    if step % 10 == 0:
                        _fold(acc, pending)
                        log.update(step + 1, loss=f"{acc['loss'] / acc['n']:.3f}",
                                   acc=f"{acc['correct'] / acc['n']:.3f}", lambd=f"{lambd:.3f}")
                    if stop:  # a signal: save where we are, then stop
                        _fold(acc, pending)
                        log.end_epoch(None, cfg.epochs)
                        path = folder.save(run.state(epoch, step + 1, epoch_gen_state, history, {
                            **{k: v for k, v in acc.items() if k != "t0"},
                            "elapsed": time.perf_counter() - acc["t0"]}))
                        raise TrainingStopped(
                            f"stopped by signal {signal.Signals(stop[0]).name} at epoch "
                            f"{epoch + 1}, step {step + 1}; "
                            + (f"checkpoint saved to {str(path)!r}; continue with --resume."
                               if path else "no checkpoint written (no --out folder was given)."
                               if folder.path is None else "rank 0 writes the checkpoint."),
                            "signal", path, history)
                start_step = 0
                _fold(acc, pending)
                # metrics: the epoch's sums over every process, then evaluation
                sums = rt.all_reduce(torch.tensor([acc[k] for k in (*SUMS, "n")],
                                                  dtype=torch.float64)).tolist()
                loss_sum, ly, ld, le, lv, correct, d_correct, n = sums
                row = {"epoch": epoch + 1, "lambd": lambd, "lr": lr, "loss": loss_sum / n,
                       "loss_y": ly / n, "loss_d": ld / n,
                       # the unweighted target terms, None where their weight is 0
                       "loss_ent": le / n if cfg.target_entropy else None,
                       "loss_vat": lv / n if cfg.target_vat else None, "train_acc": correct / n,
                       "domain_acc": d_correct / n if cfg.method == "dann" else None,
                       **evaluate(net, run.ev), "seconds": time.perf_counter() - acc["t0"]}
                fell = collapsed(history, row, run.inputs.num_classes)
                history.append(row)
                acc = None
                # log and checkpoint (rank 0); a collapsed epoch is logged, never checkpointed
                folder.write_metrics(history)
                log.end_epoch(row, cfg.epochs)
                if fell:
                    kept, kept_text = folder.last_good()
                    raise TrainingStopped(
                        f"training collapsed in epoch {epoch + 1}: the label head's training "
                        f"accuracy fell to {row['train_acc']:.3f} (chance "
                        f"{1 / run.inputs.num_classes:.3f}) after reaching "
                        f"{max(r['train_acc'] for r in history[:-1]):.3f}, so the features no "
                        f"longer separate the classes (λ {lambd:.3g}, lr {lr:.3g}). " + kept_text
                        + "Lower --lr or --lambd-max, lower --gamma (a slower λ ramp), or "
                        "use --arch mnist-bn.", "collapse", kept, history)
                if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                    folder.save(run.state(epoch + 1, 0, run.gen.get_state(), history, None))
                if run.writer is not None:
                    for k, v in row.items():
                        if isinstance(v, float):
                            run.writer.add_scalar(k, v, epoch + 1)
    finally:
        feed.close()
        if run.writer is not None:
            run.writer.close()
    result = TrainResult(cfg, net.eval(), history, pick(history), folder.path,
                         run.inputs.records, run.notes)
    folder.write_json("result.json", {"target_accuracy": result.target_accuracy,
                                      "selection": result.selection, "data": result.data,
                                      "notes": result.notes})
    if cfg.plots and folder.path is not None and rt.main:
        from backflip.dann._report import write_report

        write_report(result, run.ev)
    return result
