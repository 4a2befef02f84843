"""The inputs of a run, resolved and checked before any work: data, classes, split, model.

Nothing built in is used behind the user's back: when ``train`` is given any data set,
the data sets named in the config are not read at all, and a missing ``target_test``
means no target accuracy (said in the log, result.json and report), never a built-in
test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backflip import data
from backflip._errors import BackflipValueError
from backflip.dann._config import TrainConfig
from backflip.dann._data import TransformedItems, is_builtin, load_domain
from backflip.dann._feed import Domain, as_domain, split_indices
from backflip.dann._methods import get_method

__all__ = ["Inputs", "record", "resolve_inputs"]


@dataclass
class Inputs:
    """The checked domains of a run and what they are."""

    source: Domain  # the source's training part (after the validation hold-out)
    val: Domain | None  # the held-out source samples (val_fraction), or None
    target: Domain
    target_test: Domain | None  # None: no labelled target test set, no target accuracy
    num_classes: int
    shape: tuple[int, ...]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _Sized:
    # What check_batch_size reads of a data set: its length and name.
    def __init__(self, n: int, name: str) -> None:
        self.n, self.name = n, name

    def __len__(self) -> int:
        return self.n


def record(domain: Domain, probe: data.ArrayDataset, transform: str = "none") -> dict[str, Any]:
    """What config.json and the checkpoint say about one domain (JSON-safe)."""
    ds = domain.dataset
    inner = ds.dataset if isinstance(ds, TransformedItems) else ds  # the folder it reads
    if isinstance(inner, data.ArrayDataset | data.ImageFolder):
        rec = data.describe(inner)
    else:  # any map-style Dataset: its class, and a fingerprint of the samples checked
        rec = {"name": domain.name, "form": "dataset",
               "class": f"{type(inner).__module__}.{type(inner).__qualname__}", "path": None,
               "n": len(inner), "shape": list(probe.x.shape[1:]),
               "num_classes": domain.num_classes, "labelled": domain.labelled,
               "sha256": data.fingerprint(probe), "sha256_of": f"the first {len(probe)} samples"}
    rec["transform"] = transform
    rec["in_memory"] = domain.in_memory
    if transform != "none":
        rec["shape"] = list(probe.x.shape[1:])
    return rec


def _check(domain: Domain, probe: data.ArrayDataset, role: str, labels: bool) -> None:
    # In memory the whole data set is checked; streamed, the samples read for evaluation.
    whole = domain.dataset if domain.in_memory else probe
    data.check_dataset(whole, role, labels=labels)
    if labels and not domain.in_memory and getattr(domain.dataset, "y", None) is not None:
        y = np.asarray(domain.dataset.y)  # an ImageFolder knows every label without pixels
        data.check_dataset(data.ArrayDataset(probe.x[:1], y[:1], domain.num_classes, probe.name),
                           role)
        bad = np.flatnonzero((y < 0) | (y >= domain.num_classes))
        if bad.size:
            raise BackflipValueError(
                f"labels of the {role} data set {probe.name!r} must lie in [0, "
                f"{domain.num_classes}); got {y[bad[0]]} at index {int(bad[0])}."
            )


def _given(config: TrainConfig, source: Any, target: Any, target_test: Any
           ) -> tuple[Any, Any, Any, list[str]]:
    # The user's data sets, or the config's; never a mixture.
    notes: list[str] = []
    if source is not None or target is not None or target_test is not None:
        missing = [n for n, v in (("source", source), ("target", target)) if v is None]
        if missing:
            raise BackflipValueError(
                f"train() was given data but no {' and no '.join(missing)}; pass "
                f"{' and '.join(f'{m}=' for m in missing)} as well (unlabelled is fine for "
                "the target). Built-in data sets are never mixed in with yours."
            )
        if target_test is None:
            notes.append("no target_test was given, so this run reports no target accuracy "
                         "(the label-free selection criteria are still reported); pass "
                         "target_test= (CLI: --target-test PATH) to score one.")
        return source, target, target_test, notes
    source = load_domain(config, "source", "train")
    target = load_domain(config, "target", "train")
    if config.target_test is not None or is_builtin(config.target):
        target_test = load_domain(config, "target", "test")
    else:
        notes.append(f"the target {config.target!r} is a path and no --target-test was "
                     "given, so this run reports no target accuracy (the label-free "
                     "selection criteria are still reported).")
    return source, target, target_test, notes


def resolve_inputs(config: TrainConfig, source: Any = None, target: Any = None,
                   target_test: Any = None) -> Inputs:
    """Load (where not given) and check every domain; hold out the source validation part."""
    source, target, target_test, notes = _given(config, source, target, target_test)
    lim, workers = config.eval_limit, config.workers
    s, t = as_domain(source, "source"), as_domain(target, "target")
    tt = None if target_test is None else as_domain(target_test, "target test")
    s_probe, t_probe = s.probe(lim, workers), t.probe(lim, workers)
    tt_probe = None if tt is None else tt.probe(lim, workers)
    if s.num_classes is None and not s.in_memory:
        raise BackflipValueError(
            f"the source data set {s.name!r} does not say how many classes it has; give it "
            "a num_classes (or classes) attribute, or pass ArrayDataset(x, y, num_classes)."
        )
    _check(s, s_probe, "source", labels=True)
    for dom in (t, tt):
        if dom is not None and dom.num_classes is None:
            dom.num_classes = s.num_classes
    _check(t, t_probe, "target", labels=get_method(config.method).needs_target_labels)
    if tt is not None:
        _check(tt, tt_probe, "target test", labels=True)
    data.check_compatible(s_probe, t_probe)
    if tt_probe is not None:
        data.check_compatible(s_probe, tt_probe)
    keep, held = split_indices(len(s), config.val_fraction, config.seed)
    train_part = s.subset(keep, "source")
    val = s.subset(held, "source validation") if len(held) else None
    data.check_batch_size(_Sized(len(train_part), s.name), config.batch_size, "source",
                          held_out=config.val_fraction)
    data.check_batch_size(_Sized(len(t), t.name), config.batch_size, "target")
    records = {"source": record(s, s_probe, config.source_transform),
               "target": record(t, t_probe, config.target_transform)}
    if tt is not None:
        records["target_test"] = record(tt, tt_probe, config.target_transform)
    return Inputs(train_part, val, t, tt, int(s.num_classes), tuple(s_probe.x.shape[1:]),
                  records, notes)
