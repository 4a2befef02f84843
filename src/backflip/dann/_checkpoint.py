"""Checkpoints: atomic writes, ``weights_only=True`` loads, clear errors, ``load_model``."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from backflip._errors import BackflipValueError
from backflip.dann._config import TrainConfig

__all__ = ["FORMAT", "load_checkpoint", "load_model", "save_checkpoint"]

FORMAT = "backflip-dann/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A crash or signal during the write leaves the previous checkpoint intact.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``backflip train`` with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise BackflipValueError(
            f"no checkpoint at {str(path)!r}. Pass the checkpoint.pt inside a run folder "
            "written by `backflip train --out DIR`."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as err:
        raise BackflipValueError(
            f"checkpoint {str(path)!r} is corrupt or truncated and cannot be read "
            f"({type(err).__name__} from torch.load(weights_only=True)). "
            "Delete it and train again (or resume from an earlier copy)."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise BackflipValueError(
            f"{str(path)!r} is not a backflip DANN checkpoint (format {found!r}, expected "
            f"{FORMAT!r}). Load it with the code that wrote it, or pass a checkpoint.pt "
            "written by `backflip train`."
        )
    return state


def load_model(path: str | os.PathLike[str],
               map_location: str = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model (eval mode; ``forward(x)`` gives class logits) and its config.

    >>> load_model("/nonexistent/checkpoint.pt")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: no checkpoint at '/nonexistent/checkpoint.pt'. Pass the checkpoint.pt inside a run folder written by `backflip train --out DIR`.
    """
    from backflip.dann._models import build_model

    state = load_checkpoint(path, map_location)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(state["arch"], tuple(state["in_shape"]), int(state["num_classes"]),
                        config.hidden)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise BackflipValueError(
            f"checkpoint {str(path)!r} does not fit the {state['arch']!r} network: {err}"
        ) from None
    return model.to(map_location).eval(), config
