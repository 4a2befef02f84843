"""Side-by-side timing and its table, shared by the backend benchmarks (imported as `_timing`).

Imports no NumPy at module level: the override benches call :func:`one_blas_thread` first.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: the override benches' model: a ReLU MLP of these layer sizes on a float32 batch
MLP_BATCH, MLP_SIZES = 256, (512, 1024, 1024, 10)


def median_ratio(ours: Callable[[], object], base: Callable[[], object], repeats: int) -> dict:
    """Median wall time of ``ours`` and ``base``, interleaved so both see the same load."""
    for _ in range(2):  # warm-up: trace / compile
        ours(), base()
    t_ours: list[float] = []
    t_base: list[float] = []
    for _ in range(repeats):
        for fn, out in ((ours, t_ours), (base, t_base)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    m_ours, m_base = statistics.median(t_ours), statistics.median(t_base)
    return {"ours_ms": 1e3 * m_ours, "baseline_ms": 1e3 * m_base, "ratio": m_ours / m_base}


def machine_meta(meta: dict) -> dict:
    """``meta`` with the machine, its CPU count and load average added (every bench JSON's)."""
    return {**meta, "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_avg": os.getloadavg()}  # fmt: skip


def write_table(
    name: str,
    title: str,
    rows: list[dict],
    meta: dict,
    *,
    ours: str = "ours (ms)",
    digits: int = 1,
    one_time: dict | None = None,
) -> Path:
    """Print ``title`` and the Markdown table of ``rows``, then write bench/out/<name>.json.

    Each row has ``framework``, ``mode``, ``baseline`` and :func:`median_ratio`'s timings;
    ``ours`` heads the column of our times, ``digits`` rounds both times. ``one_time``
    costs (measured once, not in the ratios) are printed after the table. The JSON holds
    ``meta`` (with the machine, CPU count and load added), the rows and ``one_time``.
    """
    print(f"{title}\n")
    print(f"| framework | mode | baseline | {ours} | baseline (ms) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['framework']} | {r['mode']} | {r['baseline']} | {r['ours_ms']:.{digits}f} "
              f"| {r['baseline_ms']:.{digits}f} | {r['ratio']:.2f} |")  # fmt: skip
    if one_time:
        print()
        for what, value in one_time.items():
            print(f"one-time: {what}: {value:.3f}")
    meta = machine_meta(meta)
    out = Path(__file__).parent / "out" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": rows, **({"one_time": one_time} if one_time else {})}
    out.write_text(json.dumps(data, indent=2))
    print(f"\nwrote {out}")
    return out


# --- the override benches (override_*.py): the guided input gradient of a ReLU MLP


def one_blas_thread() -> None:
    """Default BLAS to one thread; call it before NumPy loads BLAS."""
    for var in BLAS_THREADS:
        os.environ.setdefault(var, "1")


def mlp_problem(seed: int = 0) -> tuple[list[tuple[Any, Any]], Any, Any]:
    """``(params, x, cot)``: float32 weights ``(W / sqrt(fan_in), 0.1 * b)`` per layer of
    :data:`MLP_SIZES`, an input batch and the cotangent of the output, seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    params = [
        (
            (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            (0.1 * rng.standard_normal(b)).astype(np.float32),
        )
        for a, b in itertools.pairwise(MLP_SIZES)
    ]
    x = rng.standard_normal((MLP_BATCH, MLP_SIZES[0])).astype(np.float32)
    return params, x, rng.standard_normal((MLP_BATCH, MLP_SIZES[-1])).astype(np.float32)


def override_rows(framework: str, mode: str, ours: Callable[[], object],
                  plain: Callable[[], object], by_hand: Callable[[], object],
                  repeats: int) -> list[dict]:  # fmt: skip
    """Our overridden step against the plain gradient and against the model by hand."""
    return [
        {"framework": framework, "mode": mode, "baseline": baseline,
         **median_ratio(ours, base, repeats)}
        for baseline, base in (("plain gradient of the same model", plain),
                               ("the model written with guided_relu", by_hand))
    ]  # fmt: skip


def write_override_table(name: str, repeats: int, rows: list[dict], one_time: dict,
                         **meta: Any) -> Path:  # fmt: skip
    """:func:`write_table` for an override bench (its title, the MLP and BLAS threads)."""
    sizes = " -> ".join(map(str, MLP_SIZES))
    title = (f"guided input gradient of a ReLU MLP ({sizes}, batch {MLP_BATCH}, float32), "
             f"median of {repeats}; target ratio <= 1.2 against the plain gradient")  # fmt: skip
    meta = {"batch": MLP_BATCH, "sizes": MLP_SIZES, "repeats": repeats, **meta,
            "blas_threads": {v: os.environ[v] for v in BLAS_THREADS}}  # fmt: skip
    return write_table(name, title, rows, meta, ours="override (ms)", digits=2, one_time=one_time)
