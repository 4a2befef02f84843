"""GRL forward+backward on a 4096x4096 float32 array, JAX and PyTensor.

For each framework, the time of ``y = reverse_gradient(x, lambd)`` plus its backward
``dL/dx = -lambd * g`` is divided by the time of the same forward+backward through
that framework's own identity, measured side by side (interleaved) in one run;
median of repeats. Compiled in both: ``jax.jit`` of the VJP for JAX,
``pytensor.function`` in its default mode for PyTensor (PyTensor 3: FAST_RUN rewrites,
Numba linker). A second
baseline is the GRL users write by hand (a ``jax.custom_vjp`` snippet; for
PyTensor the graph ``(x, -lambd * g)`` written out directly), which shows what
backflip itself costs. λ is a traced/symbolic argument in every variant.

    .venv/bin/python bench/backends_jax_pytensor.py [--quick]

Prints a Markdown table and writes bench/out/backends_jax_pytensor.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from _timing import median_ratio, write_table

SHAPE = (4096, 4096)
LAMBD = 0.5




def bench_jax(x_np: np.ndarray, g_np: np.ndarray, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    import backflip.jax as bfj

    x, g, lambd = jnp.asarray(x_np), jnp.asarray(g_np), jnp.float32(LAMBD)

    @jax.custom_vjp
    def snippet(x, lambd):  # the hand-written GRL users copy
        return x

    snippet.defvjp(lambda x, lambd: (x, lambd), lambda lambd, dy: (-lambd * dy, None))

    def step(op: Callable) -> Callable[[], object]:
        @jax.jit
        def run(x, g, lambd):
            y, vjp = jax.vjp(lambda v: op(v, lambd), x)
            return y, vjp(g)[0]

        return lambda: jax.block_until_ready(run(x, g, lambd))

    ours = step(bfj.reverse_gradient)
    return [
        {"framework": "jax", "mode": "jax.jit", "baseline": "identity (lambda x: x)",
         **median_ratio(ours, step(lambda v, lam: v), repeats)},
        {"framework": "jax", "mode": "jax.jit", "baseline": "hand-written jax.custom_vjp GRL",
         **median_ratio(ours, step(snippet), repeats)},
    ]  # fmt: skip


def bench_pytensor(x_np: np.ndarray, g_np: np.ndarray, repeats: int) -> list[dict]:
    import pytensor
    import pytensor.tensor as pt

    import backflip.pytensor as bfp

    x = pt.matrix("x", dtype="float32")
    g = pt.matrix("g", dtype="float32")
    lambd = pt.scalar("lambd", dtype="float32")
    lam = np.float32(LAMBD)

    def compiled(y, dx) -> Callable[[], object]:
        fn = pytensor.function([x, g, lambd], [y, dx], on_unused_input="ignore")
        return lambda: fn(x_np, g_np, lam)

    y = bfp.reverse_gradient(x, lambd)
    ours = compiled(y, pt.grad(None, x, known_grads={y: g}))
    y_id = pt.identity(x) if hasattr(pt, "identity") else x.copy()
    identity = compiled(y_id, pt.grad(None, x, known_grads={y_id: g}))
    by_hand = compiled(x.copy(), -lambd * g)
    return [
        {"framework": "pytensor", "mode": "pytensor.function (default: Numba)", "baseline": "identity",
         **median_ratio(ours, identity, repeats)},
        {"framework": "pytensor", "mode": "pytensor.function (default: Numba)",
         "baseline": "graph written by hand: (x, -lambd * g)",
         **median_ratio(ours, by_hand, repeats)},
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s)")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 25
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(SHAPE, dtype=np.float32)
    g_np = rng.standard_normal(SHAPE, dtype=np.float32)
    rows = bench_jax(x_np, g_np, repeats) + bench_pytensor(x_np, g_np, repeats)
    title = f"GRL forward+backward, {SHAPE[0]}x{SHAPE[1]} float32, median of {repeats}"
    write_table("backends_jax_pytensor", title, rows, {"shape": SHAPE, "repeats": repeats})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
