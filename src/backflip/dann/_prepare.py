"""Everything a run needs before its first step, and the state a checkpoint saves and restores.

:func:`prepare` checks every input first (device, data, model) and only then creates
the run folder, starts the process group, seeds, builds or checks the model, fits the
input standardisation on the source, and sets up the optimizer, AMP, DDP and compile.
:func:`restore` puts a resumed run back exactly where its checkpoint left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backflip._errors import BackflipValueError
from backflip.dann._config import TrainConfig
from backflip.dann._contract import check_model
from backflip.dann._domain_norm import bn_domain
from backflip.dann._evaluate import EvalSets, norm_domains
from backflip.dann._factory import build_from_factory, import_factory, model_class
from backflip.dann._inputs import Inputs, resolve_inputs
from backflip.dann._methods import SUMS, Method, get_method
from backflip.dann._models import Standardize, auto_arch, build_model
from backflip.dann._run_folder import RunFolder
from backflip.dann._runtime import Runtime, check_device, start_runtime

__all__ = ["RESUME_FREE", "Setup", "prepare", "restore"]

#: Fields that may differ between a run and its resumption (none changes the result).
RESUME_FREE = ("resume", "progress", "tensorboard", "out", "device", "data_root", "plots",
               "workers")


@dataclass
class Setup:
    """A run ready for its first step."""

    config: TrainConfig
    runtime: Runtime
    folder: RunFolder
    inputs: Inputs
    method: Method
    raw: torch.nn.Module  # the model as built (what is saved and returned)
    heads: torch.nn.Module | None  # the method's own heads (saved, not returned)
    adapted: Any  # backflip.dann._adapted.Adapted over raw and heads (set_lambd)
    model: torch.nn.Module  # what the loop calls: adapted, maybe under DDP and torch.compile
    arch: str  # the built-in network's name, or "user"
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype
    memory_format: torch.memory_format
    ev: EvalSets
    steps: int  # steps per epoch
    gen: torch.Generator  # draws every epoch's index plan
    writer: Any
    notes: list[str]

    @property
    def total(self) -> int:
        return self.steps * self.config.epochs

    def describe(self) -> dict[str, Any]:
        """config.json: the resolved config, the data each domain was, the model.

        ``lambd_max`` is written resolved (the method's default where it was ``None``).
        """
        # lambd_max resolved: None means the method's default, written out here
        return {**self.config.to_dict(), "lambd_max": self.config.lambd_peak,
                "data": self.inputs.records,
                "network": {"arch": self.arch, "class": model_class(self.raw),
                            "factory": self.config.model}, "notes": self.notes}

    def state(self, epoch: int, step: int, epoch_gen_state: torch.Tensor,
              history: list[dict[str, Any]], acc: dict[str, float] | None) -> dict[str, Any]:
        """The checkpoint: weights, optimizer, scaler, RNG states, position, history.

        ``acc`` holds the epoch's running sums so far and its ``elapsed`` seconds.
        """
        return {
            "config": self.config.to_dict(), "arch": self.arch,
            "in_shape": list(self.inputs.shape), "num_classes": self.inputs.num_classes,
            "data": self.inputs.records, "model_class": model_class(self.raw),
            "model_factory": self.config.model, "model": self.raw.state_dict(),
            "heads": {} if self.heads is None else self.heads.state_dict(),
            "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": epoch, "step": step, "epoch_gen_state": epoch_gen_state,
            "torch_rng": torch.get_rng_state(), "history": history,
            # the epoch's sums and elapsed seconds (the loop's clock turns its perf_counter
            # start into them: another process's or machine's clock means nothing here)
            "acc": dict(acc) if acc else {},
        }


def _tensorboard(config: TrainConfig) -> Any:
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BackflipValueError(
            "--tensorboard needs the tensorboard package, which is not installed. "
            "Install it (pip install tensorboard) or drop --tensorboard; metrics.jsonl "
            "has the same numbers."
        ) from None
    return SummaryWriter


def _network(config: TrainConfig, model: torch.nn.Module | None, inputs: Inputs
             ) -> tuple[torch.nn.Module, str]:
    # The user's model, the one --model builds, or a built-in network for the data.
    if model is not None:
        return model, "user"
    if config.model is not None:
        built = build_from_factory(config.model, inputs.shape, inputs.num_classes)
        if not isinstance(built, torch.nn.Module):
            raise BackflipValueError(
                f"model {config.model!r} returned {type(built).__name__}, not a "
                "torch.nn.Module; it must return the backflip.dann.DANN to train."
            )
        return built, "user"
    arch = config.arch if config.arch != "auto" else auto_arch(inputs.shape)
    return build_model(arch, inputs.shape, inputs.num_classes, config.hidden), arch


def _feature_dim(raw: torch.nn.Module, x: torch.Tensor) -> int:
    # The width of model.features(x).flatten(1), probed in eval mode (no state changes).
    was = raw.training
    raw.eval()
    try:
        with torch.no_grad():
            return int(raw.features(x).flatten(1).shape[1])
    finally:
        raw.train(was)


def _fit_standardize(config: TrainConfig, raw: torch.nn.Module, inputs: Inputs,
                     notes: list[str]) -> None:
    # normalize="source": the first Standardize layer of the features learns the source
    # statistics (source training part only: nothing about the target leaks in).
    if config.normalize != "source":
        return
    features = getattr(raw, "features", None)
    first = features[0] if isinstance(features, torch.nn.Sequential) and len(features) else None
    if not isinstance(first, Standardize):
        notes.append("normalize='source' standardises through a backflip.dann.Standardize "
                     "at model.features[0], which this model does not have: its inputs go "
                     "in as they are (put one there, or pass normalize='none' to say so).")
        return
    src = inputs.source
    first.fit(x for x, _ in src.chunks(np.arange(len(src)), config.workers))
    if first.constant:
        notes.append(f"normalize: {first.constant} of {first.mean.numel()} source input "
                     "channels are constant (std 0): they are centred and left unscaled "
                     "(dividing by ~0 would blow up the values the target gives them).")


def prepare(config: TrainConfig, model: torch.nn.Module | None = None, source: Any = None,
            target: Any = None, target_test: Any = None) -> Setup:
    """Check everything, then set the run up (see the module docstring)."""
    # checks that need no data: a bad device, flag or factory fails in a second
    if model is not None and config.model is not None:
        raise BackflipValueError(
            f"train() got model= and config.model {config.model!r}; pass one of them."
        )
    if model is not None and config.arch != "auto":
        raise BackflipValueError(
            f"train() got model= and config.arch {config.arch!r}; the arch names a built-in "
            "network, so leave it 'auto' when you pass your own."
        )
    check_device(config.device)
    writer_cls = _tensorboard(config)
    if config.model is not None:
        import_factory(config.model)
    inputs = resolve_inputs(config, source, target, target_test)
    notes = list(inputs.notes)
    folder = RunFolder.prepare(config.out)  # after the data is known good: no stray folder
    rt = start_runtime(config.device, config.batch_size, config.threads)
    folder.main = rt.main

    # model: seeded, checked against the contract on a probe batch, on the device
    torch.manual_seed(config.seed)
    raw, arch = _network(config, model, inputs)
    xs, _ = inputs.source.read(np.arange(min(4, len(inputs.source))))
    xt, _ = inputs.target.read(np.arange(min(4, len(inputs.target))))
    method = get_method(config.method)
    check_model(raw, torch.as_tensor(xs), torch.as_tensor(xt), inputs.num_classes, config.method)
    _fit_standardize(config, raw, inputs, notes)
    # the method's own heads (CDAN's conditional domain head, MDD's adversary), seeded
    heads = method.heads(raw, _feature_dim(raw, torch.as_tensor(xs)), inputs.num_classes,
                         config)
    domains = norm_domains(config.method)
    bn_domain(raw, domains[1])  # DomainBatchNorm: single-domain batches use these statistics
    # NHWC ("channels_last") for image data: the same maths, and on this 2-core CPU a
    # 1.2x faster step of the MNIST net (max pooling alone 3x faster; docs/results.md)
    fmt = (torch.channels_last if config.channels_last and len(inputs.shape) == 3
           else torch.contiguous_format)
    raw = raw.to(rt.device, memory_format=fmt)
    from backflip.dann._adapted import Adapted

    noise = _vat_noise(config.seed, config.batch_size, rt.shard(config.batch_size))
    adapted = Adapted(method, raw, heads, config, noise).to(rt.device)

    # optimizer, AMP, DDP, compile
    params = list(adapted.parameters())
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and rt.device.type == "cuda")
    amp_dtype = torch.float16 if rt.device.type == "cuda" else torch.bfloat16
    wrapped: torch.nn.Module = adapted
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # a method that leaves the model's discriminator unused must say so to DDP
        wrapped = DistributedDataParallel(adapted,
                                          find_unused_parameters=not method.uses_discriminator)
    # config.compile: Adapted compiles the model's forward, features and classifier

    # data: in-memory domains onto the device; the evaluation sets (first eval_limit)
    for dom in (inputs.source, inputs.target):
        dom.to(rt.device, fmt)
    ev = _eval_sets(config, inputs, rt.device, fmt, domains)
    # an epoch: one pass over the larger domain, and at least min_epoch_steps steps
    one_pass = max(len(inputs.source), len(inputs.target)) // config.batch_size
    steps = max(one_pass, config.min_epoch_steps)
    if steps > one_pass > 0:
        notes.append(f"an epoch is {steps} steps (--min-epoch-steps), {steps / one_pass:.1f} "
                     "passes over the larger domain's training set.")
    gen = torch.Generator().manual_seed(config.seed + 1)
    writer = writer_cls(str(folder.path / "tb")) if writer_cls and folder.path and rt.main \
        else None
    return Setup(config=config, runtime=rt, folder=folder, inputs=inputs, method=method,
                 raw=raw, heads=heads, adapted=adapted, model=wrapped, arch=arch, opt=opt,
                 scaler=scaler, amp_dtype=amp_dtype, memory_format=fmt, ev=ev, steps=steps,
                 gen=gen, writer=writer, notes=notes)


def _vat_noise(seed: int, batch: int, shard: slice):
    # The VAT directions of one global step, drawn from (seed, step) alone: a resumed run
    # and every process of a distributed one draw the same, and the global RNG is untouched.
    def noise(step: int, shape: tuple[int, ...]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        return torch.randn((batch, *shape), generator=gen)[shard]

    return noise


def _eval_sets(config: TrainConfig, inputs: Inputs, device: torch.device,
               fmt: torch.memory_format, domains: tuple[str, str]) -> EvalSets:
    def head(dom):
        if dom is None:
            return None, None
        x, y = dom.read(np.arange(min(config.eval_limit, len(dom))), config.workers)
        t = torch.as_tensor(np.ascontiguousarray(x), device=device)
        return (t.contiguous(memory_format=fmt) if t.dim() == 4 else t), y

    tt_x, tt_y = head(inputs.target_test)
    t_x, _ = head(inputs.target)
    s_x, s_y = head(inputs.source)
    v_x, v_y = head(inputs.val)
    return EvalSets(tt_x, tt_y, t_x, s_x, v_x, v_y, domains, s_y)


def restore(run: Setup) -> tuple[int, int, list[dict[str, Any]], dict[str, float] | None]:
    """``(epoch, step, history, sums)`` to start from: a checkpoint's, or a fresh run's.

    ``sums`` is ``None`` at an epoch's start, else the interrupted epoch's running sums
    with its ``elapsed`` seconds.
    """
    config, path = run.config, run.folder.checkpoint
    if not (config.resume and path is not None and path.exists()):
        return 0, 0, [], None
    from backflip.dann._checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location=str(run.runtime.device))
    saved = TrainConfig.from_dict(state["config"]).to_dict()
    diff = sorted(k for k, v in config.to_dict().items()
                  if k not in RESUME_FREE and saved[k] != v)
    if state["arch"] != run.arch:
        diff.append("arch")
    if state.get("model_class", model_class(run.raw)) != model_class(run.raw):
        diff.append(f"model class ({state['model_class']} then, {model_class(run.raw)} now)")
    if diff:
        raise BackflipValueError(
            f"cannot resume {str(run.folder.path)!r}: its checkpoint was written with "
            f"different settings for {diff}. Resume with the same settings, or start a "
            "fresh run in another --out folder."
        )
    run.raw.load_state_dict(state["model"])
    if run.heads is not None:
        run.heads.load_state_dict(state["heads"])
    run.opt.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.gen.set_state(state["epoch_gen_state"])
    torch.set_rng_state(state["torch_rng"])
    # an epoch cut short by an older version may lack the newer sums: they start at 0
    # (with "elapsed", the epoch's seconds so far: the loop re-bases it on its clock)
    acc = {**dict.fromkeys(SUMS, 0.0), **state["acc"]} if state["acc"] else None
    return int(state["epoch"]), int(state["step"]), list(state["history"]), acc
