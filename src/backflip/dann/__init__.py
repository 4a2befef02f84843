"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015) in PyTorch.

``DANN`` over any modules, the paper's networks, ``AdversarialHead``, a one-function
training loop configured by ``TrainConfig``, checkpoints that resume exactly,
model selection without target labels, plots, and the ``backflip run`` experiments.

>>> import torch
>>> from backflip.dann import TrainConfig, train
>>> cfg = TrainConfig(source="moons", target="moons-rotated", epochs=1, limit=64,
...                   batch_size=32, progress=False)
>>> result = train(cfg)
>>> [row["epoch"] for row in result.history], result.model(torch.zeros(3, 2)).shape
([1], torch.Size([3, 2]))
"""

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers: at run time each name is imported on first use
    from backflip.dann._checkpoint import load_checkpoint, load_model, save_checkpoint
    from backflip.dann._config import (
        ARCHITECTURES,
        METHODS,
        TrainConfig,
        add_config_arguments,
        config_from_args,
    )
    from backflip.dann._contract import check_model
    from backflip.dann._data import apply_transform, load_domain
    from backflip.dann._domain_norm import DomainBatchNorm, bn_domain
    from backflip.dann._evaluate import norm_domains
    from backflip.dann._experiments import (
        EXPERIMENTS,
        RUN_METHODS,
        experiment_config,
        run_experiment,
        table,
    )
    from backflip.dann._factory import build_from_factory
    from backflip.dann._losses import domain_loss, entropy_loss, label_loss
    from backflip.dann._models import (
        DANN,
        AdversarialHead,
        Standardize,
        auto_arch,
        build_model,
        mlp_hidden,
    )
    from backflip.dann._run_folder import RunFolder, check_out
    from backflip.dann._runtime import check_device
    from backflip.dann._selection import CRITERIA, dev_risk, pick, snd, target_entropy
    from backflip.dann._space import DEFAULT_SPACE, IntRange, Range
    from backflip.dann._train import TrainingStopped, TrainResult, train
    from backflip.dann._tune import TuneResult, tune
    from backflip.dann._vat import vat_loss

__all__ = [
    "ARCHITECTURES",
    "CRITERIA",
    "DANN",
    "DEFAULT_SPACE",
    "EXPERIMENTS",
    "METHODS",
    "RUN_METHODS",
    "AdversarialHead",
    "DomainBatchNorm",
    "IntRange",
    "Range",
    "RunFolder",
    "Standardize",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "TuneResult",
    "add_config_arguments",
    "apply_transform",
    "auto_arch",
    "bn_domain",
    "build_from_factory",
    "build_model",
    "check_device",
    "check_model",
    "check_out",
    "config_from_args",
    "dev_risk",
    "domain_loss",
    "entropy_loss",
    "experiment_config",
    "label_loss",
    "load_checkpoint",
    "load_domain",
    "load_model",
    "mlp_hidden",
    "norm_domains",
    "pick",
    "run_experiment",
    "save_checkpoint",
    "snd",
    "table",
    "target_entropy",
    "train",
    "tune",
    "vat_loss",
]

#: The private modules that define the names above, the framework-free ones first.
_MODULES = ("_config", "_data", "_selection", "_space", "_checkpoint", "_domain_norm",
            "_models", "_train", "_vat", "_contract", "_evaluate", "_factory", "_losses",
            "_run_folder", "_runtime", "_experiments", "_tune")


#: Names that need no framework (the typed config, built for the CLI's --help).
_FRAMEWORK_FREE = ("ARCHITECTURES", "CRITERIA", "DEFAULT_SPACE", "IntRange", "METHODS",
                   "Range", "TrainConfig", "add_config_arguments", "apply_transform",
                   "config_from_args", "dev_risk", "load_domain", "pick", "snd",
                   "target_entropy")


def __getattr__(name: str) -> Any:
    # PEP 562: a public name is imported when first used, so importing the typed config
    # (backflip.dann._config, no framework) does not import torch, and `backflip --help`
    # and `backflip data ...` stay quick.
    if name in __all__:
        if "torch" not in sys.modules and name not in _FRAMEWORK_FREE:
            from backflip._optional import require

            require("torch", extra="torch", purpose=f"backflip.dann.{name}")
        for module in _MODULES:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name, _MODULES)
            if value is not _MODULES:
                globals()[name] = value  # from now on a plain module attribute
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
