"""``TrainConfig``: every knob of one DANN run, typed, commented, and turned into a CLI."""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = ["METHODS", "TrainConfig", "add_config_arguments", "config_from_args"]

METHODS = ("source-only", "dann", "target-only")
#: Steps of a transform, chained with "+" (e.g. "grey+resize28"); "none" is no step.
TRANSFORM_STEPS = ("rgb", "grey", "resizeN")


def _check_transform(side: str, value: str) -> None:
    if value == "none":
        return
    for step in value.split("+"):
        size = step[len("resize"):]
        if step in ("rgb", "grey") or (step.startswith("resize") and size.isdigit()
                                       and int(size) > 0):
            continue
        hint = " (it is spelled 'grey')" if step == "gray" else ""
        raise BackflipValueError(
            f"unknown {side} {value!r}: step {step!r} is not one of rgb, grey, resizeN "
            f"(N a positive size){hint}. Chain steps with '+', e.g. 'grey+resize28', or "
            "use 'none'."
        )


@dataclass
class TrainConfig:
    """One training run (nanoGPT style: plain fields, one comment each).

    ``normalize="source"`` standardises every input channel with the mean and std of the
    SOURCE training set (after the transforms and the validation split), applied alike
    to both domains; target statistics are never used, so nothing about the target
    leaks into the map. The statistics live in the model (``features[0]``, a
    ``Standardize`` layer), so checkpoints carry them. ``"none"`` feeds raw inputs.

    >>> TrainConfig(source="moons", target="moons-rotated").method
    'dann'
    """

    source: str = "mnist"  # labelled source data set (backflip.data.DATASETS)
    target: str = "mnistm"  # unlabelled target data set (labels used only to report accuracy)
    method: str = "dann"  # source-only | dann | target-only (upper bound: trains on target labels)
    arch: str = "auto"  # mnist | mnist-bn (per-domain batch norm) | digits32 | moons | auto (from the sample shape)
    epochs: int = 10  # passes over the larger domain's training set
    batch_size: int = 64  # samples per domain per step (global, over all processes)
    optimizer: str = "sgd"  # sgd (the paper's, momentum 0.9) | adam
    lr: float = 0.01  # lr0 of the paper's annealing lr0 / (1 + 10 p) ** 0.75
    lr_schedule: str = "dann"  # dann (annealed as above) | constant
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0  # L2 penalty of the optimizer
    lambd_max: float = 1.0  # λ(p) = lambd_max * (2 / (1 + exp(-gamma p)) - 1)
    gamma: float = 10.0  # steepness of the λ schedule
    target_entropy: float = 0.0  # weight w of the mean entropy of the target predictions added to the dann loss (entropy minimisation; 0 = plain DANN)
    target_vat: float = 0.0  # weight of virtual adversarial training on the target added to the dann loss (VAT; with target_entropy: VADA; 0 = off)
    vat_eps: float = 0.25  # L2 radius of the VAT perturbation per sample, in the units of the model's input
    val_fraction: float = 0.1  # share of source train held out for model selection
    limit: int | None = None  # keep the first N samples of each split (quick runs, tests)
    source_transform: str = "none"  # none, or steps rgb | grey | resizeN chained with + (e.g. grey+resize28)
    target_transform: str = "none"  # as source_transform, for the target
    normalize: str = "source"  # source (per-channel mean/std of the source train set) | none
    seed: int = 0  # seeds initial weights, data order and the source validation split
    data_seed: int = 0  # seed of the generated data sets (moons, mnistm, syndigits, composite-zero)
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    amp: bool = False  # autocast: bf16 on CPU, fp16 + GradScaler on CUDA
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # images and conv weights in NHWC memory order (same maths, faster conv/pool)
    out: str | None = None  # run folder: config.json, metrics.jsonl, checkpoint.pt
    resume: bool = False  # continue from out/checkpoint.pt (exactly, same seed and config)
    checkpoint_every: int = 1  # write out/checkpoint.pt every N epochs (and on SIGINT/SIGTERM)
    eval_limit: int = 2000  # samples per domain used for per-epoch evaluation and selection
    progress: bool = True  # tqdm progress bar with live loss, accuracies and λ
    tensorboard: bool = False  # also log to out/tb (needs torch.utils.tensorboard)
    data_root: str | None = None  # data cache folder (default $BACKFLIP_DATA)
    hidden: int = 32  # hidden units of the moons net
    threads: int | None = None  # torch.set_num_threads (1 is fastest for tiny nets on a busy CPU)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BackflipValueError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}."
            )
        for side in ("source_transform", "target_transform"):
            _check_transform(side, getattr(self, side))
        for name, choices in (("optimizer", ("sgd", "adam")), ("lr_schedule", ("dann", "constant")),
                              ("normalize", ("source", "none"))):
            if getattr(self, name) not in choices:
                raise BackflipValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}."
                )
        for name, low, strict, high, fix in _NUMBERS:
            _check_number(name, getattr(self, name), low, strict, high, fix)
        if not 0.0 <= self.val_fraction < 1.0:
            raise BackflipValueError(
                f"val_fraction must lie in [0, 1); got {self.val_fraction}. Use 0.1 to hold "
                "out a tenth of the source training set for model selection."
            )
        for name in ("target_entropy", "target_vat"):
            if getattr(self, name) and self.method != "dann":
                raise BackflipValueError(
                    f"{name} {getattr(self, name)} uses unlabelled target data, which "
                    f"method {self.method!r} does not see; use --method dann (with "
                    "--lambd-max 0 for the term without the adversarial one)."
                )
        if self.resume and not self.out:
            raise BackflipValueError("resume needs the run folder: pass --out DIR as well.")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are rejected with the valid ones listed."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BackflipValueError(
                f"unknown TrainConfig key(s) {unknown}; valid keys: {', '.join(sorted(known))}."
            )
        return cls(**values)


# field, lowest value, whether the lowest is excluded, highest (excluded) or None, the fix
_NUMBERS: tuple[tuple[str, float, bool, float | None, str], ...] = (
    ("epochs", 1, False, None, ""),
    ("batch_size", 1, False, None, ""),
    ("lr", 0, True, None, "The paper's lr0 is 0.01."),
    ("momentum", 0, False, 1, "The paper's is 0.9; 0 turns momentum off."),
    ("weight_decay", 0, False, None, "Use 0 for none."),
    ("lambd_max", 0, False, None, "The reversal supplies the minus sign; 0 turns the "
     "adversarial term off."),
    ("gamma", 0, True, None, "The paper's is 10; to turn λ off use --lambd-max 0."),
    ("target_entropy", 0, False, None, "Use 0 for plain DANN, or a small weight such as 0.1."),
    ("target_vat", 0, False, None, "Use 0 for plain DANN, or a weight such as 1."),
    ("vat_eps", 0, True, None, "It is a length in input units, such as 0.25 for the moons."),
    ("limit", 1, False, None, "Leave it out to use all the data."),
    ("seed", 0, False, None, ""),
    ("data_seed", 0, False, None, ""),
    ("checkpoint_every", 1, False, None, ""),
    ("eval_limit", 1, False, None, ""),
    ("hidden", 1, False, None, ""),
    ("threads", 1, False, None, "Leave it out for torch's default."),
)


def _check_number(name: str, value: Any, low: float, strict: bool, high: float | None,
                  fix: str) -> None:
    # A bad number fails when the config is made, before any data is loaded.
    if value is None:  # the optional fields (limit, threads)
        return
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int and not isinstance(value, float):
        raise BackflipTypeError(f"{name} must be a number; got {value!r} of type "
                                f"{type(value).__name__}.")
    bad = (not math.isfinite(value) or value < low or (strict and value == low)
           or (high is not None and value >= high))
    if bad:
        bound = f"{'>' if strict else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise BackflipValueError(
            f"{name} must be {'' if is_int else 'finite and '}{bound}; got {value!r}."
            + (f" {fix}" if fix else "")
        )


def _base_type(tp: Any) -> type:
    if isinstance(tp, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field, with the field's comment as help."""
    import inspect

    comments: dict[str, str] = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        line = line.strip()
        if ":" in line and "#" in line and not line.startswith(("#", '"')):
            comments[line.split(":", 1)[0].strip()] = line.split("#", 1)[1].strip()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = comments.get(f.name, "") + f" (default: {f.default})"
        tp = _base_type(hints[f.name])
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        else:
            parser.add_argument(flag, type=tp, default=f.default, help=help_, metavar=f.name.upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed arguments (fields only; other attributes are ignored)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    for name, value in values.items():
        if value is not None and not isinstance(value, bool | int | float | str):
            raise BackflipTypeError(f"{name} must be a plain value; got {value!r}.")
    return TrainConfig(**values)


