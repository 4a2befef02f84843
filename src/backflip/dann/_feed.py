"""The data a run reads, whatever form it came in: in memory on the device, or streamed.

A :class:`Domain` wraps one data set for the loop:

* a :class:`backflip.data.ArrayDataset` (NumPy arrays that fit in memory) is copied to
  the device once and every batch is a gather on the device: the fast path;
* any map-style data set (a ``torch.utils.data.Dataset``, a
  :class:`backflip.data.ImageFolder`: anything with ``__len__`` and ``__getitem__``
  returning ``(x, y)``, or ``x`` alone when unlabelled) is streamed: a
  ``DataLoader`` with ``workers`` processes reads each step's samples.

Both read the same samples for the same index plan (:func:`epoch_plan`), so a run on
a streamed data set equals the run on the same samples in memory, and resumes as
exactly. Under ``torchrun`` every process reads its own shard of each global batch
(a distributed sampler in effect, sharded per batch rather than per epoch, so the
global batch, and with it the result, is the same as one process's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backflip import data
from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = ["Domain", "Feed", "as_domain", "epoch_plan", "split_indices"]

#: Samples per chunk when a domain is read in order (statistics, evaluation sets).
CHUNK = 1024


def epoch_plan(n: int, steps: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """The sample indices of one epoch, ``(steps, batch)``: fresh permutations of ``n``.

    >>> epoch_plan(3, 2, 2, torch.Generator().manual_seed(0)).shape
    torch.Size([2, 2])
    """
    need = steps * batch
    perms = [torch.randperm(n, generator=gen) for _ in range(math.ceil(need / n))]
    return torch.cat(perms)[:need].view(steps, batch)


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices: ``round(n * fraction)`` samples held out at random.

    >>> [a.tolist() for a in split_indices(5, 0.4, 0)]
    [[0, 1, 3], [2, 4]]
    """
    n_val = round(n * fraction)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _num_classes(ds: Any) -> int | None:
    value = getattr(ds, "num_classes", None)
    if value is None and getattr(ds, "classes", None) is not None:
        value = len(ds.classes)
    return None if value is None else int(value)


def _item(ds: Any, i: int) -> tuple[Any, Any]:
    # A map-style item: (x, y), or x alone (unlabelled: y reads as -1, never used).
    item = ds[int(i)]
    if isinstance(item, tuple | list):
        x, y = item[0], (item[1] if len(item) > 1 else -1)
    else:
        x, y = item, -1
    return x, (-1 if y is None else y)


class _Keyed(torch.utils.data.Dataset):
    # The streamed domains of a run behind one DataLoader: key (domain, index).
    def __init__(self, sets: Sequence[Any]) -> None:
        self.sets = list(sets)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any]:
        d, i = key
        return _item(self.sets[d], i)


def _collate(sizes: list[int]):
    from torch.utils.data import default_collate

    def collate(items: list[tuple[Any, Any]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out, start = [], 0
        for size in sizes:
            xs, ys = zip(*items[start:start + size], strict=True)
            x = default_collate([torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor)
                                 else v for v in xs])
            out.append((x, torch.as_tensor(np.asarray(ys), dtype=torch.int64)))
            start += size
        return out

    return collate


@dataclass
class Domain:
    """One domain of a run: where its samples are and what they are.

    ``indices`` selects the samples of ``dataset`` this domain reads (the source's
    training part after the validation split, say); batches index into it.
    """

    role: str
    dataset: Any  # an ArrayDataset (in memory) or a map-style data set (streamed)
    indices: np.ndarray
    num_classes: int | None
    labelled: bool
    in_memory: bool
    record: dict[str, Any] = field(default_factory=dict)
    x: torch.Tensor | None = None  # in memory: the samples on the device
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def name(self) -> str:
        return str(getattr(self.dataset, "name", type(self.dataset).__name__))

    def subset(self, indices: np.ndarray, role: str) -> Domain:
        """The same data set restricted to ``indices`` (positions in this domain)."""
        return Domain(role, self.dataset, self.indices[indices], self.num_classes,
                      self.labelled, self.in_memory, self.record)

    def to(self, device: torch.device, memory_format: torch.memory_format) -> Domain:
        """Copy an in-memory domain's samples to ``device`` (streamed ones stay put)."""
        if self.in_memory:
            x = torch.as_tensor(np.ascontiguousarray(self.dataset.x[self.indices]), device=device)
            self.x = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
            y = self.dataset.y
            self.y = None if y is None else torch.as_tensor(y[self.indices], device=device)
        return self

    def read(self, positions: np.ndarray, workers: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """The samples at ``positions`` (of this domain) as NumPy arrays, in order."""
        if self.in_memory:
            idx = self.indices[positions]
            y = self.dataset.y
            return np.asarray(self.dataset.x[idx]), (None if y is None else np.asarray(y[idx]))
        xs, ys = [], []
        for chunk in self.chunks(positions, workers):
            xs.append(chunk[0].numpy())
            ys.append(chunk[1].numpy())
        x = np.concatenate(xs) if xs else np.zeros((0,), np.float32)
        return x, (np.concatenate(ys) if self.labelled and ys else None)

    def chunks(self, positions: np.ndarray, workers: int = 0
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The samples at ``positions`` in chunks of :data:`CHUNK`, as CPU tensors."""
        if self.in_memory:
            for i in range(0, len(positions), CHUNK):
                idx = self.indices[positions[i:i + CHUNK]]
                y = self.dataset.y
                yield (torch.as_tensor(self.dataset.x[idx]),
                       torch.as_tensor(np.full(len(idx), -1) if y is None else y[idx]))
            return
        rows = [[(0, int(self.indices[p])) for p in positions[i:i + CHUNK]]
                for i in range(0, len(positions), CHUNK)]
        for (batch,) in _loader([self.dataset], rows, [len(r) for r in rows[:1]] or [0], workers,
                                uneven=True):
            yield batch

    def probe(self, limit: int, workers: int = 0) -> data.ArrayDataset:
        """The first ``limit`` samples as an ArrayDataset: what the checks look at."""
        x, y = self.read(np.arange(min(limit, len(self))), workers)
        origin = getattr(self.dataset, "origin", None) or {"form": "dataset"}
        return data.ArrayDataset(x, y if self.labelled else None, self.num_classes, self.name,
                                 origin=origin)


def _loader(sets: Sequence[Any], rows: Sequence[list[tuple[int, int]]], sizes: list[int],
            workers: int, pin: bool = False, uneven: bool = False, seed: int = 0):
    # One DataLoader over every streamed domain; each element of ``rows`` is one batch.
    # Its own generator: a DataLoader without one draws its workers' base seed from the
    # global RNG, which would shift every later dropout mask (the streamed run would
    # differ from the in-memory one, and a resumed run from the uninterrupted one).
    from torch.utils.data import DataLoader

    if uneven:  # chunks of varying length, one domain: collate per batch
        def collate(items):
            return _collate([len(items)])(items)
    else:
        collate = _collate(sizes)
    return DataLoader(_Keyed(sets), batch_sampler=rows, num_workers=workers, collate_fn=collate,
                      pin_memory=pin, prefetch_factor=4 if workers else None,
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed))


class _RunRows:
    # The batch sampler of a whole run: each step's keys (streamed domain, sample index)
    # from (start_epoch, start_step) on. It draws every epoch's plan from its own copy of
    # the loop's generator, so it yields exactly the batches the loop's plans name, and
    # runs ahead of the loop (prefetching across an epoch's end) without touching it.
    def __init__(self, domains: Sequence[Domain], streamed: list[int], gen_state: torch.Tensor,
                 start_epoch: int, start_step: int, epochs: int, steps: int, batch_size: int,
                 shard: slice) -> None:
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(0)
        gen.set_state(self.gen_state)
        for epoch in range(self.start_epoch, self.epochs):
            plans = [epoch_plan(len(d), self.steps, self.batch_size, gen) for d in self.domains]
            for step in range(self.start_step if epoch == self.start_epoch else 0, self.steps):
                yield [(j, int(self.domains[k].indices[i])) for j, k in enumerate(self.streamed)
                       for i in plans[k][step, self.shard].tolist()]


class Feed:
    """Every step's batches of a run, one ``(x, y)`` per domain, on the device.

    In-memory domains gather by the loop's plans on the device. Streamed ones come
    through ONE DataLoader for the whole run (its ``workers`` start once and keep reading
    ahead across epoch ends, evaluation included), with its own generator: worker seeds
    derive from ``seed`` and the global RNG is not touched.
    """

    def __init__(self, domains: Sequence[Domain], *, batch_size: int, steps: int, epochs: int,
                 start_epoch: int, start_step: int, gen_state: torch.Tensor, shard: slice,
                 device: torch.device, memory_format: torch.memory_format, workers: int = 0,
                 seed: int = 0) -> None:
        self.domains, self.shard, self.device = list(domains), shard, device
        self.memory_format = memory_format
        self.streamed = [k for k, d in enumerate(domains) if not d.in_memory]
        self._loader = None
        if self.streamed:
            rows = _RunRows(self.domains, self.streamed, gen_state, start_epoch, start_step,
                            epochs, steps, batch_size, shard)
            local = len(range(batch_size)[shard])
            self._loader = iter(_loader([self.domains[k].dataset for k in self.streamed], rows,
                                        [local] * len(self.streamed), workers,
                                        pin=device.type == "cuda", seed=seed))

    def epoch(self, plans: Sequence[torch.Tensor], start: int
              ) -> Iterator[list[tuple[torch.Tensor, torch.Tensor | None]]]:
        """The batches of one epoch from step ``start`` on; ``plans[k]`` is domain k's plan."""
        for step in range(start, len(plans[0])):
            fetched = next(self._loader) if self._loader is not None else []
            out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
            for k, d in enumerate(self.domains):
                if d.in_memory:
                    i = plans[k][step, self.shard].to(self.device)
                    out.append((d.x[i], None if d.y is None else d.y[i]))
                    continue
                x, y = fetched[self.streamed.index(k)]
                x = x.to(self.device, non_blocking=True)
                x = x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x
                out.append((x, y.to(self.device, non_blocking=True) if d.labelled else None))
            yield out

    def close(self) -> None:
        """Stop the DataLoader's workers (also when a run stops early)."""
        self._loader = None


def as_domain(ds: Any, role: str) -> Domain:
    """Wrap a data set given for ``role`` ("source", "target", "target test") as a Domain.

    >>> d = as_domain(data.ArrayDataset(np.zeros((4, 2), np.float32), None), "target")
    >>> len(d), d.labelled, d.in_memory
    (4, False, True)
    """
    if isinstance(ds, data.ArrayDataset):
        return Domain(role, ds, np.arange(len(ds)), ds.num_classes, ds.y is not None, True)
    if isinstance(ds, torch.utils.data.IterableDataset):
        raise BackflipTypeError(
            f"the {role} data is an IterableDataset ({type(ds).__name__}); the trainer needs "
            "a map-style Dataset (__len__ and __getitem__) to draw the same batches on every "
            "process and to resume exactly. Index your samples, or load them into an "
            "ArrayDataset."
        )
    if isinstance(ds, np.ndarray | torch.Tensor | list | tuple | dict) or not (
            hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise BackflipTypeError(
            f"the {role} data must be a backflip.data.ArrayDataset (arrays in memory), a "
            "backflip.data.ImageFolder, or a map-style torch.utils.data.Dataset (with "
            f"__len__ and __getitem__ returning (x, y) or x); got {type(ds).__name__}. Wrap "
            "arrays as ArrayDataset(x, y), or read files with backflip.data.open_dataset(path)."
        )
    n = len(ds)
    if n == 0:
        raise BackflipValueError(f"the {role} data set {getattr(ds, 'name', type(ds).__name__)!r}"
                                 " is empty (0 samples); training needs samples in each domain.")
    labelled = getattr(ds, "labelled", None)
    if labelled is None:
        first = ds[0]
        labelled = isinstance(first, tuple | list) and len(first) > 1 and first[1] is not None
    return Domain(role, ds, np.arange(n), _num_classes(ds), bool(labelled), False)
