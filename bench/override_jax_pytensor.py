"""override_gradients against a plain gradient of the same model, JAX and PyTensor.

The model is a 3-layer ReLU MLP (float32, batch 256, 512 -> 1024 -> 1024 -> 10); the
measured step is its input gradient ``dL/dx`` (what a saliency map needs), compiled:
``jax.jit`` of ``jax.grad`` for JAX, ``pytensor.function`` in its default mode for
PyTensor. For each framework, the step of the model rewritten by
``override_gradients(..., "guided")`` is divided by the plain gradient of the
unchanged model (target <= 1.2), and by the same model written by hand with
``guided_relu`` (what the rewrite itself costs), measured side by side (interleaved)
in one run; median of repeats. BLAS runs on one thread (``OMP_NUM_THREADS`` etc.
default to 1; set them to change that): on a shared machine, multi-threaded BLAS
calls of the two variants wait on other processes by different amounts and the
ratio drifts by up to 30% from run to run. The one-time costs (JAX: trace + compile
of the first call; PyTensor: the graph rewrite) are reported apart.

    .venv/bin/python bench/override_jax_pytensor.py [--quick]

Prints a Markdown table and writes bench/out/override_jax_pytensor.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _timing import mlp_problem, one_blas_thread, override_rows, write_override_table

one_blas_thread()  # before numpy loads BLAS


def bench_jax(params, x_np, cot_np, repeats: int) -> tuple[list[dict], dict]:
    import jax
    import jax.numpy as jnp

    import backflip.jax as bfj

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
    x, cot = jnp.asarray(x_np), jnp.asarray(cot_np)

    def mlp(params, x, act=jax.nn.relu):
        for w, b in params[:-1]:
            x = act(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def loss(params, x):
        return jnp.sum(mlp(params, x) * cot)

    def by_hand(params, x):
        return jnp.sum(mlp(params, x, bfj.guided_relu) * cot)

    guided, report = bfj.override_gradients(loss, "guided")
    steps = {name: jax.jit(jax.grad(f, argnums=1)) for name, f in
             (("override", guided), ("plain", loss), ("by_hand", by_hand))}  # fmt: skip
    first = time.perf_counter()
    jax.block_until_ready(steps["override"](params, x))
    once = {"jax trace + compile of the overridden step (s)": time.perf_counter() - first}
    assert report.complete and report.seen == 2

    def run(name: str) -> Callable[[], object]:
        return lambda: jax.block_until_ready(steps[name](params, x))

    rows = override_rows("jax", "jax.jit(jax.grad)", run("override"), run("plain"),
                         run("by_hand"), repeats)  # fmt: skip
    return rows, once


def bench_pytensor(params, x_np, cot_np, repeats: int) -> tuple[list[dict], dict]:
    import pytensor
    import pytensor.tensor as pt

    import backflip.pytensor as bfp

    x = pt.matrix("x", dtype="float32")

    def mlp(act):
        h = x
        for w, b in params[:-1]:
            h = act(h @ w + b)
        w, b = params[-1]
        return ((h @ w + b) * cot_np).sum()

    loss = mlp(lambda h: pt.maximum(h, 0))
    start = time.perf_counter()
    guided, report = bfp.override_gradients(loss, "guided")
    once = {"pytensor graph rewrite (s)": time.perf_counter() - start}
    assert report.complete and report.seen == 2
    by_hand = mlp(bfp.guided_relu)
    fns = {name: pytensor.function([x], pt.grad(y, x)) for name, y in
           (("override", guided), ("plain", loss), ("by_hand", by_hand))}  # fmt: skip

    def run(name: str) -> Callable[[], object]:
        return lambda: fns[name](x_np)

    rows = override_rows("pytensor", "pytensor.function (default: Numba)", run("override"),
                         run("plain"), run("by_hand"), repeats)  # fmt: skip
    return rows, once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s)")
    args = parser.parse_args(argv)
    repeats = 15 if args.quick else 101
    params, x_np, cot_np = mlp_problem()
    jax_rows, jax_once = bench_jax(params, x_np, cot_np, repeats)
    pt_rows, pt_once = bench_pytensor(params, x_np, cot_np, repeats)
    write_override_table("override_jax_pytensor", repeats, jax_rows + pt_rows,
                         {**jax_once, **pt_once})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
