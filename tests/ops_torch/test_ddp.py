"""DistributedDataParallel, 2 CPU processes on gloo: same gradients as one process."""

from __future__ import annotations

import socket

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from backflip.torch import GradientReversal  # noqa: E402


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), GradientReversal(0.7), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    )


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        x, y = _data()
        xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
        torch.nn.functional.cross_entropy(model(xs), ys).backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.module.named_parameters()}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    model = _model()
    x, y = _data()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(ddp[name], p.grad, atol=1e-6), name
    assert ddp["0.weight"].abs().sum() > 0
