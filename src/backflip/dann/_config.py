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
from backflip.dann._methods import METHODS as _METHOD_OBJECTS
from backflip.dann._methods import get_method

__all__ = ["ARCHITECTURES", "METHODS", "TrainConfig", "add_config_arguments", "config_from_args"]

#: The names ``method`` takes (:data:`backflip.dann._methods.METHODS` has the objects).
METHODS = tuple(_METHOD_OBJECTS)
#: The built-in networks ``arch`` names (``"auto"`` picks one from the sample shape).
ARCHITECTURES = ("mnist", "mnist-bn", "digits32", "conv", "mlp", "moons")
#: Steps of a transform, chained with "+" (e.g. "grey+resize28"); "none" is no step.
TRANSFORM_STEPS = ("rgb", "grey", "resizeN")


def _field(default: Any, help: str) -> Any:
    # A field with its one-line help: the CLI flag's help is read from this metadata.
    return dataclasses.field(default=default, metadata={"help": help})


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

    source: str = _field("mnist", "labelled source data: a built-in name (backflip.data.DATASETS) or a path: .npz (keys x, y), .csv (a label column), or a folder with one sub-folder of images per class")
    target: str = _field("mnistm", "unlabelled target data: a built-in name or a path as for source (.npy of x too); its labels, if any, are used only by target-only")
    target_test: str | None = _field(None, "labelled target test data that scores target accuracy: a built-in name or a path; default: the target's test split for a built-in target, none for a path (the run then reports no target accuracy)")
    label_column: str = _field("label", "the label column of a .csv source or target")
    image_size: int | None = _field(None, "resize the images of a folder to N x N (default: they must all have one size)")
    stream: bool = _field(False, "read image folders from disk batch by batch (DataLoader workers) instead of loading them into memory")
    workers: int = _field(0, "DataLoader worker processes for streamed data (0: read in the training process)")
    model: str | None = _field(None, "MODULE:FUNCTION of your own code that returns the backflip.dann.DANN to train (instead of a built-in --arch)")
    method: str = _field("dann", "; ".join(f"{m.name}: {m.summary}" for m in _METHOD_OBJECTS.values()))
    arch: str = _field("auto", "built-in network: mnist (C x 28 x 28) | mnist-bn (per-domain batch norm) | digits32 (C x 32 x 32) | conv (any image size and channels) | mlp (vectors) | moons (the moons' mlp) | auto (from the sample shape)")
    epochs: int = _field(10, "passes over the larger domain's training set (each at least --min-epoch-steps steps)")
    min_epoch_steps: int = _field(100, "the fewest steps an epoch takes: a small data set is passed over more than once per epoch, so that it is not left under-trained (1: exactly one pass)")
    batch_size: int = _field(64, "samples per domain per step (global, over all processes)")
    optimizer: str = _field("sgd", "sgd (the paper's, momentum 0.9) | adam")
    lr: float = _field(0.01, "lr0 of the paper's annealing lr0 / (1 + 10 p) ** 0.75")
    lr_schedule: str = _field("dann", "dann (annealed as above) | constant")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(0.0, "L2 penalty of the optimizer")
    lambd_max: float | None = _field(None, "λ(p) = lambd_max * (2 / (1 + exp(-gamma p)) - 1), the weight of the method's transfer term in the features' gradient (default: the method's own, 1 for most, 0.1 for mdd)")
    gamma: float = _field(10.0, "steepness of the λ schedule")
    margin: float = _field(4.0, "mdd: the margin factor γ of the source disparity (the paper's 4)")
    temperature: float = _field(2.5, "mcc: the temperature T of the target probabilities (the paper's 2.5)")
    target_entropy: float = _field(0.0, "weight w of the mean entropy of the target predictions added to the dann loss (entropy minimisation; 0 = plain DANN)")
    target_vat: float = _field(0.0, "weight of virtual adversarial training on the target added to the dann loss (VAT; with target_entropy: VADA; 0 = off)")
    vat_eps: float = _field(0.25, "L2 radius of the VAT perturbation per sample, in the units of the model's input")
    val_fraction: float = _field(0.1, "share of source train held out for model selection")
    limit: int | None = _field(None, "keep the first N samples of each split (quick runs, tests)")
    source_transform: str = _field("none", "none, or steps rgb | grey | resizeN chained with + (e.g. grey+resize28)")
    target_transform: str = _field("none", "as source_transform, for the target")
    normalize: str = _field("source", "source (per-channel mean/std of the source train set) | none")
    seed: int = _field(0, "seeds initial weights, data order and the source validation split")
    data_seed: int = _field(0, "seed of the generated data sets (moons, mnistm, syndigits, composite-zero)")
    device: str = _field("cpu", "cpu | cuda | cuda:N | mps")
    amp: bool = _field(False, "autocast: bf16 on CPU, fp16 + GradScaler on CUDA")
    compile: bool = _field(False, "torch.compile the model")
    channels_last: bool = _field(True, "images and conv weights in NHWC memory order (same maths, faster conv/pool)")
    out: str | None = _field(None, "run folder: config.json, metrics.jsonl, checkpoint.pt, result.json, report.md and plots")
    resume: bool = _field(False, "continue from out/checkpoint.pt (exactly, same seed and config)")
    checkpoint_every: int = _field(1, "write out/checkpoint.pt every N epochs (and on SIGINT/SIGTERM)")
    eval_limit: int = _field(2000, "samples per domain used for per-epoch evaluation and selection")
    progress: bool = _field(True, "progress bar with live loss, accuracy and λ where stdout is a terminal, else one line per epoch; off: silent")
    tensorboard: bool = _field(False, "also log to out/tb (needs torch.utils.tensorboard)")
    data_root: str | None = _field(None, "data cache folder (default $BACKFLIP_DATA)")
    hidden: int | None = _field(None, "hidden units of the built-in mlp / moons net (default: sized to the data, backflip.dann.mlp_hidden)")
    plots: bool = _field(True, "write report.md with the table, training curves and a feature PCA into --out (needs matplotlib)")
    threads: int | None = _field(None, "torch.set_num_threads (1 is fastest for tiny nets on a busy CPU)")

    def __post_init__(self) -> None:
        method = get_method(self.method)
        for side in ("source_transform", "target_transform"):
            _check_transform(side, getattr(self, side))
        for name, choices in (("optimizer", ("sgd", "adam")), ("lr_schedule", ("dann", "constant")),
                              ("normalize", ("source", "none")),
                              ("arch", ("auto", *ARCHITECTURES))):
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
            if getattr(self, name) and (not method.uses_target or method.needs_target_labels):
                raise BackflipValueError(
                    f"{name} {getattr(self, name)} uses unlabelled target data, which "
                    f"method {self.method!r} does not see; use a method that adapts (e.g. "
                    "--method dann, with --lambd-max 0 for the term alone)."
                )
        if self.model is not None:
            if not isinstance(self.model, str) or self.model.count(":") != 1 or not all(
                    self.model.split(":")):
                raise BackflipValueError(
                    f"model must be 'MODULE:FUNCTION' (e.g. 'mynets:build', the function "
                    f"in mynets.py that returns a backflip.dann.DANN); got {self.model!r}."
                )
            if self.arch != "auto":
                raise BackflipValueError(
                    f"model {self.model!r} and arch {self.arch!r} both name the network; "
                    "pass one of them (--model for your own, --arch for a built-in)."
                )
        if self.resume and not self.out:
            raise BackflipValueError("resume needs the run folder: pass --out DIR as well.")

    @property
    def lambd_peak(self) -> float:
        """``lambd_max``, or the method's default where it is ``None``.

        >>> TrainConfig(method="mdd").lambd_peak, TrainConfig(method="mdd", lambd_max=1.0).lambd_peak
        (0.1, 1.0)
        """
        if self.lambd_max is not None:
            return float(self.lambd_max)
        return get_method(self.method).default_lambd_max

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
    ("margin", 0, True, None, "MDD's paper uses 4."),
    ("temperature", 0, True, None, "MCC's paper uses 2.5."),
    ("min_epoch_steps", 1, False, None, "Use 1 for exactly one pass per epoch."),
    ("target_entropy", 0, False, None, "Use 0 for plain DANN, or a small weight such as 0.1."),
    ("target_vat", 0, False, None, "Use 0 for plain DANN, or a weight such as 1."),
    ("vat_eps", 0, True, None, "It is a length in input units, such as 0.25 for the moons."),
    ("limit", 1, False, None, "Leave it out to use all the data."),
    ("seed", 0, False, None, ""),
    ("data_seed", 0, False, None, ""),
    ("checkpoint_every", 1, False, None, ""),
    ("eval_limit", 1, False, None, ""),
    ("hidden", 1, False, None, ""),
    ("workers", 0, False, None, "Use 0 to read in the training process."),
    ("image_size", 1, False, None, "Leave it out to keep the images' own size."),
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
    """One ``--flag`` per TrainConfig field, with the help its field's metadata holds.

    >>> parser = argparse.ArgumentParser()
    >>> add_config_arguments(parser)
    >>> parser.parse_args(["--source", "moons", "--batch-size", "16"]).batch_size
    16
    """
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + f" (default: {f.default})"
        tp = _base_type(hints[f.name])
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_)
        else:
            parser.add_argument(flag, type=tp, default=f.default, help=help_, metavar=f.name.upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed arguments (fields only; other attributes are ignored).

    >>> parser = argparse.ArgumentParser()
    >>> add_config_arguments(parser)
    >>> config_from_args(parser.parse_args(["--source", "moons"])).source
    'moons'
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    for name, value in values.items():
        if value is not None and not isinstance(value, bool | int | float | str):
            raise BackflipTypeError(f"{name} must be a plain value; got {value!r}.")
    return TrainConfig(**values)


