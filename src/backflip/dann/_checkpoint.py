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

    A crash or signal during the write (SIGKILL included) leaves the previous checkpoint
    intact; the next save removes the temp file such a write left behind.

    >>> import tempfile
    >>> path = save_checkpoint({"epoch": 3}, Path(tempfile.mkdtemp()) / "checkpoint.pt")
    >>> load_checkpoint(path)
    {'format': 'backflip-dann/1', 'epoch': 3}
    """
    path = Path(path)
    for stale in path.parent.glob(path.name + ".*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
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
    """Load a checkpoint written by ``backflip train`` with ``torch.load(weights_only=True)``.

    >>> import tempfile
    >>> path = save_checkpoint({"epoch": 3}, Path(tempfile.mkdtemp()) / "checkpoint.pt")
    >>> load_checkpoint(path)["epoch"]
    3
    """
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


def load_model(path: str | os.PathLike[str], map_location: str = "cpu", *,
               model: torch.nn.Module | None = None) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model (eval mode; ``forward(x)`` gives class logits) and its config.

    A built-in network is rebuilt from the checkpoint. A run on your own network loads
    into ``model`` (your instance, built as for training), or into the one the run's
    ``--model MODULE:FUNCTION`` builds when ``model`` is not given; a checkpoint that does
    not fit ``model`` gets an error naming the keys or shapes that differ.

    >>> load_model("/nonexistent/checkpoint.pt")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: no checkpoint at '/nonexistent/checkpoint.pt'. Pass the checkpoint.pt inside a run folder written by `backflip train --out DIR`.
    """
    from backflip.dann._factory import build_from_factory, model_class
    from backflip.dann._models import build_model

    state = load_checkpoint(path, map_location)
    config = TrainConfig.from_dict(state["config"])
    shape, classes = tuple(state["in_shape"]), int(state["num_classes"])
    if model is None and state["arch"] == "user":
        factory = state.get("model_factory")
        if factory is None:
            raise BackflipValueError(
                f"checkpoint {str(path)!r} holds your own network (class "
                f"{state.get('model_class', '?')}), which it cannot rebuild by itself; build "
                "one as for training and pass it: load_model(path, model=my_model) (CLI: "
                "--model MODULE:FUNCTION)."
            )
        model = build_from_factory(factory, shape, classes)
    if model is None:
        model = build_model(state["arch"], shape, classes, config.hidden)
        what = f"the {state['arch']!r} network"
    else:
        what = f"the model passed ({model_class(model)}; the run trained {state.get('model_class', state['arch'])})"
    if not isinstance(model, torch.nn.Module):
        raise BackflipValueError(
            f"model must be a torch.nn.Module to load {str(path)!r} into; got "
            f"{type(model).__name__}."
        )
    own = model.state_dict()
    saved = state["model"]
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    shapes = [f"{k}: {tuple(saved[k].shape)} saved, {tuple(own[k].shape)} here"
              for k in sorted(set(own) & set(saved))
              if hasattr(saved[k], "shape") and hasattr(own[k], "shape")
              and saved[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = ([f"missing from the checkpoint: {', '.join(missing[:5])}"
                  + (" ..." if len(missing) > 5 else "")] if missing else []) + \
                ([f"not in the model: {', '.join(unexpected[:5])}"
                  + (" ..." if len(unexpected) > 5 else "")] if unexpected else []) + \
                ([f"other shapes: {'; '.join(shapes[:5])}"] if shapes else [])
        raise BackflipValueError(
            f"checkpoint {str(path)!r} does not fit {what}: {'; '.join(parts)}. Build the "
            "model exactly as for training (same modules, sizes and classes)."
        )
    model.load_state_dict(saved)
    return model.to(map_location).eval(), config
