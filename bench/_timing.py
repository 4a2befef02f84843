"""Side-by-side timing shared by the backend benchmarks (imported as `_timing`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
