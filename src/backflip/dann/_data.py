"""The domains of a run, loaded and transformed exactly as the model was trained on them."""

from __future__ import annotations

import numpy as np

from backflip import data
from backflip._errors import BackflipValueError
from backflip.dann._config import TrainConfig, _check_transform

__all__ = ["apply_transform", "load_domain"]


def apply_transform(ds: data.ArrayDataset, transform: str) -> data.ArrayDataset:
    """Apply ``"none"``, ``"rgb"``, ``"grey"``, ``"resizeN"`` or a ``+`` chain of them to a data set.

    An unknown step raises (never a silent no-op):

    >>> apply_transform(data.load("moons", limit=2), "gray")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: unknown transform 'gray': step 'gray' is not one of rgb, grey, resizeN (N a positive size) (it is spelled 'grey'). Chain steps with '+', e.g. 'grey+resize28', or use 'none'.
    """
    _check_transform("transform", transform)
    if transform == "none":
        return ds
    for step in transform.split("+"):
        if step == "rgb":
            ds = data.to_rgb(ds)
        elif step == "grey":
            ds = data.to_grey(ds)
        elif step.startswith("resize"):
            ds = data.resize(ds, int(step[len("resize"):]))
    return ds


def load_domain(config: TrainConfig, domain: str, split: str = "test",
                root: str | None = None) -> data.ArrayDataset:
    """The ``"source"`` or ``"target"`` data set of ``config`` for ``split``, transformed.

    >>> cfg = TrainConfig(source="moons", target="moons-rotated", limit=8)
    >>> load_domain(cfg, "target").x.shape
    (8, 2)
    """
    if domain not in ("source", "target"):
        raise BackflipValueError(f"domain must be 'source' or 'target'; got {domain!r}.")
    name = config.source if domain == "source" else config.target
    ds = data.load(name, split, root=root or config.data_root, seed=config.data_seed,
                   limit=config.limit)
    ds = apply_transform(ds, getattr(config, f"{domain}_transform"))
    return data.ArrayDataset(np.ascontiguousarray(ds.x, np.float32), ds.y, ds.num_classes,
                             ds.name, ds.attrs)
