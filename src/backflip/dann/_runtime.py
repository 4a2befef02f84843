"""Where a run executes: the device check, the process group under ``torchrun``, threads.

Shared by :func:`backflip.dann.train`, the composite-zero experiment and the CLI, so a
bad ``device=`` (CLI ``--device``) fails the same way everywhere, before any work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from backflip._errors import BackflipValueError

__all__ = ["Runtime", "check_device", "start_runtime"]


def check_device(name: str) -> torch.device:
    """The ``torch.device`` called ``name``; a clear error if it is unknown or absent here.

    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("tpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: unknown device 'tpu' (...). Pass device='cpu', 'cuda', 'cuda:N' or 'mps' (CLI: --device).
    """
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise BackflipValueError(
            f"unknown device {name!r} ({err}). Pass device='cpu', 'cuda', 'cuda:N' or 'mps' "
            "(CLI: --device)."
        ) from None
    backend = {"cuda": torch.cuda, "mps": torch.backends.mps}.get(device.type)
    if backend is not None and not backend.is_available():
        raise BackflipValueError(
            f"device {name!r}: this PyTorch ({torch.__version__}) or machine has no "
            f"{device.type.upper()} device. Pass device='cpu' (CLI: --device cpu)."
        )
    return device


@dataclass(frozen=True)
class Runtime:
    """This process's place in the run: its device, rank and the number of processes."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This process's slice of a global batch of ``batch_size`` samples."""
        local = batch_size // self.world
        return slice(self.rank * local, (self.rank + 1) * local)

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """The sum of ``values`` over every process (``values`` itself with one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(values)
        return values


def _init_group(backend: str, rank: int, world: int) -> None:
    # torchrun --max-restarts restarts a failed group over the same agent store; torch's
    # env:// rendezvous reuses its keys, so the new group reads the dead processes'
    # addresses and fails ("Connection refused"; pytorch/pytorch#167288). Each attempt
    # gets a key prefix of its own.
    import torch.distributed as dist

    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend)
        return
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent and rank == 0, multi_tenant=not agent)
    dist.init_process_group(backend, store=dist.PrefixStore(f"backflip/attempt-{attempt}", store),
                            rank=rank, world_size=world)


def start_runtime(device: str, batch_size: int, threads: int | None = None) -> Runtime:
    """Check the device, join the process group under ``torchrun`` (``WORLD_SIZE`` > 1).

    nccl on CUDA (each process on its ``LOCAL_RANK`` GPU), gloo otherwise. The global
    ``batch_size`` must split evenly over the processes.
    """
    dev = check_device(device)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % world:
        raise BackflipValueError(
            f"batch_size {batch_size} must be divisible by the {world} processes; "
            f"use --batch-size {batch_size // world * world or world}."
        )
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            _init_group("nccl" if dev.type == "cuda" else "gloo", rank, world)
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if threads:
        torch.set_num_threads(threads)
    return Runtime(dev, rank, world)
