"""``train(config)``: one DANN / source-only / target-only run, read top to bottom."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backflip import data
from backflip._errors import BackflipError, BackflipValueError
from backflip.dann._checkpoint import load_checkpoint, save_checkpoint
from backflip.dann._config import TrainConfig
from backflip.dann._data import load_domain
from backflip.dann._domain_norm import bn_domain
from backflip.dann._models import DANN, build_model
from backflip.dann._selection import dev_risk, pick, snd, target_entropy
from backflip.dann._vat import vat_loss
from backflip.schedules import dann_lambda, dann_learning_rate

__all__ = ["TrainResult", "TrainingStopped", "train"]

# Fields that may differ between a run and its resumption.
_RESUME_FREE = ("resume", "progress", "tensorboard", "out", "device", "data_root")


class TrainingStopped(BackflipError, RuntimeError):
    """Training stopped early; the last good checkpoint (if any) was kept.

    ``reason`` is ``"nan"`` (non-finite loss), ``"collapse"`` (the label head fell back
    to chance after it had learned) or ``"signal"`` (SIGINT/SIGTERM). ``history`` holds
    the per-epoch metrics rows of the epochs completed before the stop (for a collapse, the
    collapsed epoch last; a NaN or a signal mid-epoch adds no row for the unfinished epoch).
    """

    def __init__(self, message: str, reason: str, checkpoint: Path | None = None,
                 history: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.checkpoint = checkpoint
        self.history = list(history or [])


@dataclass
class TrainResult:
    """What a run produced: the model, per-epoch history and what each criterion picks."""

    config: TrainConfig
    model: DANN
    history: list[dict[str, Any]]
    selection: dict[str, dict[str, float]] = field(default_factory=dict)
    out: Path | None = None

    @property
    def target_accuracy(self) -> float:
        """Target test accuracy after the final epoch (the headline number; not selected)."""
        return float(self.history[-1]["target_acc"])


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise BackflipValueError(
            f"unknown device {name!r} ({err}). Use --device cpu, cuda, cuda:N or mps."
        ) from None
    backend = {"cuda": torch.cuda, "mps": torch.backends.mps}.get(device.type)
    if backend is not None and not backend.is_available():
        raise BackflipValueError(
            f"--device {name}: this PyTorch ({torch.__version__}) or machine has no "
            f"{device.type.upper()} device. Use --device cpu."
        )


def _check_out(out: str | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".backflip-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise BackflipValueError(
            f"the output folder {str(path)!r} is not writable ({err.strerror}). Pass a folder "
            "you can write to with --out DIR."
        ) from None
    return path


def _pick_arch(config: TrainConfig, shape: tuple[int, ...]) -> str:
    if config.arch != "auto":
        return config.arch
    if len(shape) == 1:
        return "moons"
    if len(shape) == 3 and shape[1:] == (28, 28):
        return "mnist"
    if len(shape) == 3 and shape[1:] == (32, 32):
        return "digits32"
    raise BackflipValueError(
        f"no built-in network for samples of shape {shape}; resize images to 28 or 32 "
        "(--source-transform/--target-transform resize32) or use backflip.dann.DANN with "
        "your own modules."
    )


def _split_val(ds: data.ArrayDataset, fraction: float, seed: int):
    n_val = round(len(ds) * fraction)
    order = np.random.default_rng(seed).permutation(len(ds))
    keep, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    sub = lambda i, tag: data.ArrayDataset(ds.x[i], ds.y[i], ds.num_classes,  # noqa: E731
                                           f"{ds.name}[{tag}]")
    return sub(keep, "train"), (sub(val, "val") if n_val else None)


def _batches(n: int, steps: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    # Indices of one epoch, (steps, batch): fresh permutations, concatenated as needed.
    need = steps * batch
    perms = [torch.randperm(n, generator=gen) for _ in range(math.ceil(need / n))]
    return torch.cat(perms)[:need].view(steps, batch)


@torch.no_grad()
def _predict(model: DANN, x: torch.Tensor, chunk: int = 512):
    logits, feats = [], []
    for i in range(0, len(x), chunk):
        f = model.features(x[i:i + chunk])
        feats.append(f.flatten(1).float())
        logits.append(model.classifier(f).float())
    return torch.cat(logits).cpu().numpy(), torch.cat(feats).cpu().numpy()


def _domains(method: str) -> tuple[str, str]:
    # The DomainBatchNorm statistics (if any) applied to (source, target) inputs: each
    # domain's own under dann; a single-domain method has only its training domain's.
    if method == "source-only":
        return "source", "source"
    if method == "target-only":
        return "target", "target"
    return "source", "target"


def _evaluate(model: DANN, ev: dict[str, Any]) -> dict[str, float]:
    # Target accuracy is reported; selection criteria use source labels and unlabelled target.
    model.eval()
    out: dict[str, float] = {}
    source_domain, target_domain = ev["domains"]
    bn_domain(model, target_domain)
    t_logits, _ = _predict(model, ev["target_test_x"])
    out["target_acc"] = float((t_logits.argmax(1) == ev["target_test_y"]).mean())
    out["target_test_n"] = len(ev["target_test_y"])  # the first --eval-limit test images
    tu_logits, tu_feats = _predict(model, ev["target_x"])
    out["target_entropy"] = target_entropy(tu_logits)
    out["snd"] = snd(tu_logits[:1000])
    if ev["val_x"] is not None:
        bn_domain(model, source_domain)
        v_logits, v_feats = _predict(model, ev["val_x"])
        out["source_val_acc"] = float((v_logits.argmax(1) == ev["val_y"]).mean())
        v = torch.from_numpy(v_logits)
        losses = F.cross_entropy(v, torch.from_numpy(ev["val_y"]), reduction="none").numpy()
        _, s_feats = _predict(model, ev["source_x"])
        out["dev_risk"] = dev_risk(s_feats[:1000], tu_feats[:1000], v_feats, losses)
    bn_domain(model, target_domain)  # the default a saved model applies
    model.train()
    return out


#: The per-step sums kept on the device between folds, in the order of ``pending``.
_SUMS = ("loss", "loss_y", "loss_d", "loss_ent", "loss_vat", "correct", "d_correct")


def _fold(acc: dict[str, float], pending: torch.Tensor) -> None:
    """Add the device-side running sums into ``acc`` (one host sync) and reset them."""
    for key, value in zip(_SUMS, pending.tolist(), strict=True):
        acc[key] += value
    pending.zero_()


def _last_good(out: Path | None) -> tuple[Path | None, str]:
    """The checkpoint a stopped run keeps (None if it has none) and the sentence saying so."""
    path = None if out is None else out / "checkpoint.pt"
    if path is None or not path.exists():
        return None, ""
    return path, f"The last good checkpoint is kept at {str(path)!r}. "


def _collapsed(history: list[dict[str, Any]], row: dict[str, Any], num_classes: int) -> bool:
    # The label head fell back to chance after it had learned: the features stopped
    # separating the classes (under DANN, typically the reversed domain gradient won).
    chance = 1.0 / num_classes
    best = max((r["train_acc"] for r in history), default=0.0)
    return row["train_acc"] <= chance + 0.05 and best >= chance + 0.25


def _vat_noise(seed: int, step: int, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    # The VAT directions of one global step, drawn from (seed, step) alone: a resumed run
    # and every process of a distributed one draw the same, and the global RNG is untouched.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randn((batch, *shape), generator=gen)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world


def train(config: TrainConfig, *, source: data.ArrayDataset | None = None,
          target: data.ArrayDataset | None = None,
          target_test: data.ArrayDataset | None = None) -> TrainResult:
    """Train one model as ``config`` says; returns a :class:`TrainResult`.

    ``source`` (labelled train), ``target`` (train; labels used only by ``target-only``)
    and ``target_test`` default to the data sets named in ``config``. Every input is
    checked before the first step. Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs
    DistributedDataParallel over index shards of each global batch; rank 0 writes.

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
    # -- inputs: load and check everything before any training starts
    _check_device(config.device)
    if config.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise BackflipValueError(
                "--tensorboard needs the tensorboard package, which is not installed. "
                "Install it (pip install tensorboard) or drop --tensorboard; metrics.jsonl "
                "has the same numbers."
            ) from None
    source = source if source is not None else load_domain(config, "source", "train")
    target = target if target is not None else load_domain(config, "target", "train")
    target_test = target_test if target_test is not None else load_domain(config, "target", "test")
    out = _check_out(config.out)  # after the names are known good: a typo leaves no folder
    data.check_dataset(source, "source")
    data.check_dataset(target, "target", labels=config.method == "target-only")
    data.check_dataset(target_test, "target test")
    data.check_compatible(source, target)
    data.check_compatible(source, target_test)
    source, val = _split_val(source, config.val_fraction, config.seed)
    data.check_batch_size(source, config.batch_size, "source")
    data.check_batch_size(target, config.batch_size, "target")
    rank, world = _distributed()
    if config.batch_size % world:
        raise BackflipValueError(
            f"batch_size {config.batch_size} must be divisible by the {world} processes; "
            f"use --batch-size {config.batch_size // world * world or world}."
        )
    device = torch.device(config.device)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    # -- model, optimizer, data as tensors on the device
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    shape = tuple(source.x.shape[1:])
    arch = _pick_arch(config, shape)
    raw = build_model(arch, shape, source.num_classes, config.hidden)
    if config.normalize == "source":
        raw.features[0].fit(source.x)  # source statistics only: no target information
    domains = _domains(config.method)
    bn_domain(raw, domains[1])  # DomainBatchNorm: single-domain batches use these statistics
    # NHWC ("channels_last") for image data: the same maths, and on this 2-core CPU a
    # 1.2x faster step of the MNIST net (max pooling alone 3x faster; docs/results.md)
    fmt = torch.channels_last if config.channels_last and len(shape) == 3 else \
        torch.contiguous_format
    raw = raw.to(device, memory_format=fmt)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(raw.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(raw.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    use_scaler = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    model: torch.nn.Module = raw
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(raw, find_unused_parameters=config.method != "dann")
    if config.compile:
        model = torch.compile(model)
    def tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(a, device=device)
        return t.contiguous(memory_format=fmt) if t.dim() == 4 else t

    sx, sy, tx, ty = tensor(source.x), tensor(source.y), tensor(target.x), tensor(target.y)
    lim = config.eval_limit
    ev = {"target_test_x": tensor(target_test.x[:lim]), "target_test_y": target_test.y[:lim],
          "target_x": tx[:lim], "source_x": sx[:lim],
          "val_x": None if val is None else tensor(val.x[:lim]),
          "val_y": None if val is None else val.y[:lim], "domains": domains}
    bs, local = config.batch_size, config.batch_size // world
    zero = torch.zeros((), device=device)  # the loss terms a method or setting leaves out
    steps = max(len(source), len(target)) // bs
    total = steps * config.epochs
    gen = torch.Generator().manual_seed(config.seed + 1)

    # -- resume: weights, optimizer, scaler, RNG states and position
    history: list[dict[str, Any]] = []
    start_epoch, start_step, acc = 0, 0, None
    if config.resume and (out / "checkpoint.pt").exists():
        state = load_checkpoint(out / "checkpoint.pt", map_location=str(device))
        saved = TrainConfig.from_dict(state["config"]).to_dict()
        diff = sorted(k for k, v in config.to_dict().items()
                      if k not in _RESUME_FREE and saved[k] != v)
        if diff or state["arch"] != arch:
            raise BackflipValueError(
                f"cannot resume {str(out)!r}: its checkpoint was written with different "
                f"settings for {diff or ['arch']}. Resume with the same settings, or start "
                "a fresh run in another --out folder."
            )
        raw.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["epoch_gen_state"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        # an epoch cut short by an older version may lack the newer sums: they start at 0
        history, acc = list(state["history"]), {**dict.fromkeys(_SUMS, 0.0), **state["acc"]}
        if "elapsed" in acc:  # the epoch's time so far, re-based on this process's clock
            acc["t0"] = time.perf_counter() - acc.pop("elapsed")
    if out is not None and rank == 0:
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    writer = SummaryWriter(str(out / "tb")) if config.tensorboard and rank == 0 else None

    def checkpoint(epoch: int, step: int, epoch_gen_state: torch.Tensor) -> Path | None:
        if out is None or rank != 0:
            return None
        return save_checkpoint({
            "config": config.to_dict(), "arch": arch, "in_shape": list(shape),
            "num_classes": source.num_classes, "model": raw.state_dict(),
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "step": step, "epoch_gen_state": epoch_gen_state,
            "torch_rng": torch.get_rng_state(), "history": history,
            # the epoch's elapsed seconds, not its perf_counter start: another process's
            # (or machine's) clock means nothing after a resume
            "acc": {**{k: v for k, v in acc.items() if k != "t0"},
                    "elapsed": time.perf_counter() - acc["t0"]} if acc else {},
        }, out / "checkpoint.pt")

    # -- signals: SIGINT/SIGTERM finish the current step, save, and stop
    stop: list[int] = []
    old = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda s, _f: stop.append(s))

    from tqdm.auto import tqdm

    try:
        for epoch in range(start_epoch, config.epochs):
            epoch_gen_state = gen.get_state()
            idx_s, idx_t = _batches(len(source), steps, bs, gen), _batches(len(target), steps, bs, gen)
            if acc is None or start_step == 0:
                acc = {**dict.fromkeys((*_SUMS, "n"), 0.0), "t0": time.perf_counter()}
            pending = torch.zeros(len(_SUMS), dtype=torch.float64, device=device)
            bar = tqdm(range(start_step, steps), total=steps, initial=start_step,
                       desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                       disable=not config.progress or rank != 0)
            for step in bar:
                # schedule: progress p drives the learning rate and λ
                p = (epoch * steps + step) / total
                lr = dann_learning_rate(p, config.lr) if config.lr_schedule == "dann" else config.lr
                for group in opt.param_groups:
                    group["lr"] = lr
                lambd = dann_lambda(p, config.gamma, config.lambd_max)
                raw.grl.set_lambd(lambd)
                # batch: this process's shard of the global source and target batches
                i_s = idx_s[step, rank * local:(rank + 1) * local].to(device)
                i_t = idx_t[step, rank * local:(rank + 1) * local].to(device)
                # forward and losses (logits in, so safe under autocast)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=config.amp):
                    if config.method == "dann":
                        both, dom = model(torch.cat([sx[i_s], tx[i_t]]), with_domain=True)
                        logits = both[:local]
                        dom_y = torch.cat([torch.zeros(local, device=device),
                                           torch.ones(local, device=device)])
                        loss_y = F.cross_entropy(logits.float(), sy[i_s])
                        loss_d = F.binary_cross_entropy_with_logits(dom.float(), dom_y)
                        loss_ent = loss_vat = zero
                        if config.target_entropy:  # mean_i H(softmax(target logits_i))
                            logp = both[local:].float().log_softmax(1)
                            loss_ent = -(logp.exp() * logp).sum(1).mean()
                        if config.target_vat:  # mean_i KL(p_i || p(x_i + r_adv_i))
                            loss_vat = vat_loss(
                                raw, tx[i_t],
                                _vat_noise(config.seed, epoch * steps + step, bs,
                                           tx.shape[1:])[rank * local:(rank + 1) * local],
                                config.vat_eps)
                        loss = (loss_y + loss_d + config.target_entropy * loss_ent
                                + config.target_vat * loss_vat)
                        d_correct = ((dom > 0).float() == dom_y).float().sum() / 2
                    else:
                        x, y = (sx[i_s], sy[i_s]) if config.method == "source-only" else (
                            tx[i_t], ty[i_t])
                        logits = model(x)
                        loss = loss_y = F.cross_entropy(logits.float(), y)
                        loss_d = loss_ent = loss_vat = d_correct = zero
                if not torch.isfinite(loss):
                    kept, kept_text = _last_good(out)
                    raise TrainingStopped(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"(lr {lr:.3g}, λ {lambd:.3g}); training stopped. "
                        + kept_text
                        + "Lower --lr, turn off --amp, or check the inputs for NaN/inf.",
                        "nan", kept, history)
                # backward and step
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                # log: running sums on the device (no host sync per step), folded into
                # the epoch's sums every 10 steps, at a checkpoint and at the epoch's end
                y_true = sy[i_s] if config.method != "target-only" else ty[i_t]
                pending += torch.stack([
                    *(t.detach() * local for t in (loss, loss_y, loss_d, loss_ent, loss_vat)),
                    (logits.argmax(1) == y_true).sum(), d_correct]).double()
                acc["n"] += local
                if step % 10 == 0:
                    _fold(acc, pending)
                    bar.set_postfix(loss=f"{acc['loss'] / acc['n']:.3f}",
                                    acc=f"{acc['correct'] / acc['n']:.3f}", lambd=f"{lambd:.3f}")
                if stop:
                    _fold(acc, pending)
                    path = checkpoint(epoch, step + 1, epoch_gen_state)
                    raise TrainingStopped(
                        f"stopped by signal {signal.Signals(stop[0]).name} at epoch {epoch + 1}, "
                        f"step {step + 1}; "
                        + (f"checkpoint saved to {str(path)!r}; continue with --resume."
                           if path else "no checkpoint written (no --out folder was given)."
                           if out is None else "rank 0 writes the checkpoint."),
                        "signal", path, history)
            start_step = 0
            _fold(acc, pending)
            # metrics: all-reduce the running sums over processes, then evaluate
            sums = torch.tensor([acc[k] for k in (*_SUMS, "n")], dtype=torch.float64)
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(sums)
            loss_sum, ly, ld, le, lv, correct, d_correct_sum, n = sums.tolist()
            row = {"epoch": epoch + 1, "lambd": lambd, "lr": lr, "loss": loss_sum / n,
                   "loss_y": ly / n, "loss_d": ld / n,
                   # the unweighted target terms, None where their weight is 0
                   "loss_ent": le / n if config.target_entropy else None,
                   "loss_vat": lv / n if config.target_vat else None, "train_acc": correct / n,
                   "domain_acc": d_correct_sum / n if config.method == "dann" else None,
                   **_evaluate(raw, ev), "seconds": time.perf_counter() - acc["t0"]}
            collapsed = _collapsed(history, row, source.num_classes)
            history.append(row)
            acc = None
            # log and checkpoint (rank 0); a collapsed epoch is logged, never checkpointed
            if out is not None and rank == 0:
                tmp = out / "metrics.jsonl.tmp"
                tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
                os.replace(tmp, out / "metrics.jsonl")
            if collapsed:
                kept, kept_text = _last_good(out)
                raise TrainingStopped(
                    f"training collapsed in epoch {epoch + 1}: the label head's training "
                    f"accuracy fell to {row['train_acc']:.3f} (chance {1 / source.num_classes:.3f})"
                    f" after reaching {max(r['train_acc'] for r in history[:-1]):.3f}, so the "
                    f"features no longer separate the classes (λ {lambd:.3g}, lr {lr:.3g}). "
                    + kept_text
                    + "Lower --lr or --lambd-max, lower --gamma (a slower λ ramp), or "
                    "use --arch mnist-bn.", "collapse", kept, history)
            if out is not None and rank == 0:
                if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                    checkpoint(epoch + 1, 0, gen.get_state())
            if writer is not None:
                for k, v in row.items():
                    if isinstance(v, float):
                        writer.add_scalar(k, v, epoch + 1)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.close()
    result = TrainResult(config, raw.eval(), history, pick(history), out)
    if out is not None and rank == 0:
        (out / "result.json").write_text(json.dumps({
            "target_accuracy": result.target_accuracy, "selection": result.selection}, indent=2))
    return result
