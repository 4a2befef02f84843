"""Forward+backward cost of gradient reversal layers in PyTorch (float32, CPU or GPU).

Variants, each run on a leaf ``x`` with ``y = op(x); y.backward(g)``:

* ``identity``: ``y = x`` (baseline: only the gradient accumulation into ``x.grad``);
* ``bare-neg``: a minimal ``autograd.Function`` (``x.view_as(x)`` forward, ``-g`` backward);
* ``backflip``: ``backflip.torch.reverse_gradient(x, lambd)`` with a 0-d tensor λ;
* ``copy-grl``: forward ``x * 1.0`` (a copy, as tllib and the common blog recipe), ``-g``;
* ``revgrad``: ``pytorch_revgrad.RevGrad()`` 0.2.0 (saves its input for backward);
* ``compiled-*``: ``torch.compile`` of the op (default inductor backend).

Time: all variants interleaved in rounds (same machine load), median over rounds, as a
ratio to ``bare-neg`` and to ``identity``. Memory: bytes saved for backward, counted with
``torch.autograd.graph.saved_tensors_hooks`` (storage size of each packed tensor), and
bytes allocated in the forward, counted as the storage size of every output or saved
tensor whose storage is not the input's (a view shares ``x``'s storage: 0 bytes).

    .venv/bin/python bench/ops.py [--quick]

A second table gives the fixed per-call cost on an 8-element tensor (where the work
is negligible), to separate Python/autograd overhead from memory traffic.

Prints Markdown tables and writes bench/out/ops.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from backflip.torch import reverse_gradient


class _BareNeg(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


class _BareNegNewStyle(torch.autograd.Function):
    """As _BareNeg, in the form torch.func needs (setup_context, generated vmap rule)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return -g


class _CopyGRL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        return -g


def _variants(compile_: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    from pytorch_revgrad import RevGrad

    lambd = torch.tensor(1.0)
    ops = {
        "identity": lambda x: x,
        "bare-neg": _BareNeg.apply,
        "backflip": lambda x: reverse_gradient(x, lambd),
        "copy-grl": _CopyGRL.apply,
        "revgrad": RevGrad(1.0),
    }
    if compile_:
        for name in ("bare-neg", "backflip", "copy-grl"):
            ops[f"compiled-{name}"] = torch.compile(ops[name], fullgraph=True, dynamic=False)
    return ops


def _memory(op, x: torch.Tensor) -> tuple[int, int]:
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = op(x)
    base = x.untyped_storage().data_ptr()
    new = {}
    for t in (y, *saved):
        s = t.untyped_storage()
        if s.data_ptr() != base:
            new[s.data_ptr()] = s.nbytes()
    saved_bytes = sum(t.untyped_storage().nbytes() for t in saved)
    return saved_bytes, sum(new.values())


def _step(op, x, g) -> None:
    x.grad = None
    op(x).backward(g)


def run(shapes, rounds: int, compile_: bool) -> list[dict]:
    ops = _variants(compile_)
    rows = []
    for shape in shapes:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)
        for op in ops.values():  # warm-up (and compile)
            for _ in range(2):
                _step(op, x, g)
        times: dict[str, list[float]] = {n: [] for n in ops}
        for _ in range(rounds):
            for name, op in ops.items():
                start = time.perf_counter()
                _step(op, x, g)
                times[name].append(time.perf_counter() - start)
        med = {n: statistics.median(t) for n, t in times.items()}
        for name, op in ops.items():
            saved, alloc = _memory(op, x)
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "variant": name,
                    "median_ms": 1e3 * med[name],
                    "vs_bare_neg": med[name] / med["bare-neg"],
                    "vs_identity": med[name] / med["identity"],
                    "saved_bytes": saved,
                    "forward_alloc_bytes": alloc,
                }
            )
    return rows


def overhead(rounds: int) -> dict[str, float]:
    """Fixed per-call cost (µs) of fwd+bwd on an 8-element tensor, median of rounds."""
    lambd = torch.tensor(1.0)
    ops = {
        "bare-neg": _BareNeg.apply,
        "bare-neg, setup_context form": _BareNegNewStyle.apply,
        "backflip, float lambd": lambda x: reverse_gradient(x, 1.0),
        "backflip, tensor lambd": lambda x: reverse_gradient(x, lambd),
    }
    x, g = torch.randn(8, requires_grad=True), torch.randn(8)
    times: dict[str, list[float]] = {n: [] for n in ops}
    for _ in range(rounds):
        for name, op in ops.items():
            start = time.perf_counter()
            for _ in range(50):
                _step(op, x, g)
            times[name].append((time.perf_counter() - start) / 50 * 1e6)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (< 60 s)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    args = ap.parse_args()
    rounds = 15 if args.quick else 60
    t0 = time.perf_counter()
    rows = run([(256, 4096), (4096, 4096)], rounds, not args.no_compile)
    print("| shape | variant | median ms | / bare-neg | / identity | saved B | fwd alloc B |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['variant']} | {r['median_ms']:.3f} | {r['vs_bare_neg']:.3f} "
            f"| {r['vs_identity']:.3f} | {r['saved_bytes']} | {r['forward_alloc_bytes']} |"
        )
    over = overhead(rounds)
    print("\n| per call, 8 elements | median µs |\n|---|---|")
    for name, us in over.items():
        print(f"| {name} | {us:.1f} |")
    meta = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "load_avg": os.getloadavg(),
        "seconds": time.perf_counter() - t0,
    }
    print(f"\n{meta}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "ops.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "overhead_us": over}, indent=1)
    )


if __name__ == "__main__":
    main()
