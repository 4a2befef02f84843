"""GRL forward+backward on a 4096x4096 float32 tensor, TensorFlow and Keras 3 backends.

For each framework, the time of ``y = reverse_gradient(x, lambd)`` plus its backward
``dL/dx = -lambd * g`` is divided by the time of the same forward+backward through
that framework's own identity, measured side by side (interleaved) in one run;
median of repeats. Compiled where the framework compiles: ``tf.function`` for
TensorFlow and Keras/TensorFlow, ``jax.jit`` for Keras/JAX; Keras/PyTorch runs
eagerly. Each Keras backend runs in its own process (KERAS_BACKEND).

    .venv/bin/python bench/backends_tf_keras.py [--quick]

Prints a Markdown table and writes bench/out/backends_tf_keras.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from _timing import median_ratio, write_table

SHAPE = (4096, 4096)
LAMBD = 0.5




def bench_tensorflow(repeats: int) -> list[dict]:
    import tensorflow as tf

    import backflip.tensorflow as bft

    x = tf.random.normal(SHAPE, seed=0)
    g = tf.random.normal(SHAPE, seed=1)
    lambd = tf.Variable(LAMBD)

    @tf.custom_gradient
    def snippet(x):  # the hand-written GRL users copy
        return tf.identity(x), lambda dy: -LAMBD * dy

    def step(op):
        @tf.function
        def run(x, g):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = op(x)
            return y, tape.gradient(y, x, output_gradients=g)

        return lambda: run(x, g)

    ours = step(lambda x: bft.reverse_gradient(x, lambd))
    rows = [{"framework": "tensorflow", "mode": "tf.function", "baseline": "tf.identity",
             **median_ratio(ours, step(tf.identity), repeats)}]
    rows.append({"framework": "tensorflow", "mode": "tf.function",
                 "baseline": "hand-written tf.custom_gradient GRL",
                 **median_ratio(ours, step(snippet), repeats)})
    return rows


def bench_keras(repeats: int) -> list[dict]:
    import keras
    import numpy as np

    import backflip.keras as bfk

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(SHAPE, dtype=np.float32)
    g_np = rng.standard_normal(SHAPE, dtype=np.float32)
    ours_fn = lambda x, lambd: bfk.reverse_gradient(x, lambd)  # noqa: E731
    base_fn = lambda x, lambd: keras.ops.copy(x)  # noqa: E731
    if backend == "tensorflow":
        import tensorflow as tf

        x, g, lambd = tf.constant(x_np), tf.constant(g_np), tf.Variable(LAMBD)

        def step(op):
            @tf.function
            def run(x, g):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = op(x, lambd)
                return y, tape.gradient(y, x, output_gradients=g)

            return lambda: run(x, g)

        mode = "tf.function"
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        x, g, lambd = jnp.asarray(x_np), jnp.asarray(g_np), jnp.float32(LAMBD)

        def step(op):
            @jax.jit
            def run(x, g, lambd):
                y, pull = jax.vjp(lambda x: op(x, lambd), x)
                return y, pull(g)[0]

            return lambda: jax.block_until_ready(run(x, g, lambd))

        mode = "jax.jit"
    else:
        import torch

        x = torch.tensor(x_np, requires_grad=True)
        g, lambd = torch.tensor(g_np), torch.tensor(LAMBD)

        def step(op):
            def run():
                y = op(x, lambd)
                return y, torch.autograd.grad(y, x, g)[0]

            return run

        mode = "eager"
    return [{"framework": f"keras-{backend}", "mode": mode, "baseline": "keras.ops.copy",
             **median_ratio(step(ours_fn), step(base_fn), repeats)}]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one Keras backend
    args = parser.parse_args(argv)
    repeats = 7 if args.quick else 30
    if args.child:
        print(json.dumps(bench_keras(repeats)))
        return 0
    rows = bench_tensorflow(repeats)
    for backend in ("tensorflow", "jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                   JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run(
            [sys.executable, __file__, "--child", backend, *(["--quick"] if args.quick else [])],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode:
            print(f"keras-{backend} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    title = (f"GRL forward+backward, {SHAPE[0]}x{SHAPE[1]} float32, median of {repeats} "
             f"(machine: {platform.machine()}, {os.cpu_count()} CPU cores)")  # fmt: skip
    write_table("backends_tf_keras", title, rows, {"shape": SHAPE, "repeats": repeats})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
