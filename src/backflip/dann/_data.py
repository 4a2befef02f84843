"""The domains of a run, loaded and transformed exactly as the model was trained on them."""

from __future__ import annotations

from typing import Any

import numpy as np

from backflip import data
from backflip._errors import BackflipValueError
from backflip.dann._config import TrainConfig, _check_transform

__all__ = ["TransformedItems", "apply_transform", "is_builtin", "load_domain", "open_spec"]


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


class TransformedItems:
    """A streamed data set whose every sample goes through :func:`apply_transform`."""

    def __init__(self, dataset: Any, transform: str) -> None:
        _check_transform("transform", transform)
        self.dataset, self.transform = dataset, transform
        self.name = getattr(dataset, "name", type(dataset).__name__)
        self.num_classes = getattr(dataset, "num_classes", None)
        self.labelled = getattr(dataset, "labelled", None)
        self.origin = getattr(dataset, "origin", {})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Any]:
        x, y = self.dataset[i]
        one = data.ArrayDataset(np.asarray(x, np.float32)[None], None, None, self.name)
        return apply_transform(one, self.transform).x[0], y


def is_builtin(spec: str | None) -> bool:
    """Whether ``spec`` names a built-in data set (else it is a path)."""
    return spec in data.DATASETS


def open_spec(config: TrainConfig, spec: str, split: str, transform: str = "none",
              root: str | None = None) -> Any:
    """The data set ``spec`` (a built-in name or a path) as ``config`` reads it, transformed.

    In memory an :class:`~backflip.data.ArrayDataset`; a folder with ``config.stream``
    an :class:`~backflip.data.ImageFolder` (transformed sample by sample).
    """
    ds = data.open_dataset(spec, split=split, root=root or config.data_root,
                           seed=config.data_seed, limit=config.limit,
                           label_column=config.label_column, image_size=config.image_size,
                           stream=config.stream)
    if not isinstance(ds, data.ArrayDataset):
        return ds if transform == "none" else TransformedItems(ds, transform)
    ds = apply_transform(ds, transform)
    return data.ArrayDataset(np.ascontiguousarray(ds.x, np.float32), ds.y, ds.num_classes,
                             ds.name, ds.attrs, ds.origin)


def load_domain(config: TrainConfig, domain: str, split: str = "test",
                root: str | None = None) -> Any:
    """The ``"source"`` or ``"target"`` data set of ``config`` for ``split``, transformed.

    ``domain="target", split="test"`` reads ``config.target_test`` where it is set.
    A path has no splits: it is read whatever ``split`` says.

    >>> cfg = TrainConfig(source="moons", target="moons-rotated", limit=8)
    >>> load_domain(cfg, "target").x.shape
    (8, 2)
    """
    if domain not in ("source", "target"):
        raise BackflipValueError(f"domain must be 'source' or 'target'; got {domain!r}.")
    spec = config.source if domain == "source" else config.target
    if domain == "target" and split == "test" and config.target_test is not None:
        spec = config.target_test
    return open_spec(config, spec, split, getattr(config, f"{domain}_transform"), root)
