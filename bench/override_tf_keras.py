"""override_gradients against a plain gradient of the same model, TensorFlow and Keras 3.

The model is a 3-layer ReLU MLP (float32, batch 256, 512 -> 1024 -> 1024 -> 10); the
measured step is its input gradient ``dL/dx`` (what a saliency map needs) through a
``tf.GradientTape``: in a ``tf.function``, eagerly (the same function under
``tf.config.run_functions_eagerly(True)``), and as a Keras model on the TensorFlow
backend, eagerly and inside a ``tf.function``. Each step under ``override_gradients(...,
"guided")`` is divided by the plain gradient of the unchanged model (target <= 1.2),
and by the same model written by hand with ``guided_relu`` (what the dispatch itself
costs), measured side by side (interleaved) in one run; median of repeats. Eager
steps enter and leave the block on every step (the patching is part of the cost); a
tf.function keeps one block across its steps, since each block retraces it once (that
retrace is reported apart, with the cost of an empty block). TensorFlow and BLAS run
on one thread: on a shared machine multi-threaded kernels of the two variants wait on
other processes by different amounts and the ratio drifts from run to run.

    .venv/bin/python bench/override_tf_keras.py [--quick]

Prints a Markdown table and writes bench/out/override_tf_keras.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in _THREADS:
    os.environ.setdefault(_var, "1")  # before numpy loads BLAS
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import median_ratio  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import backflip.keras as bfk  # noqa: E402
import backflip.tensorflow as bft  # noqa: E402

BATCH, SIZES = 256, (512, 1024, 1024, 10)


def weights(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (
            (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            (0.1 * rng.standard_normal(b)).astype(np.float32),
        )
        for a, b in itertools.pairwise(SIZES)
    ]


def _row(framework: str, mode: str, baseline: str, timing: dict) -> dict:
    return {"framework": framework, "mode": mode, "baseline": baseline, **timing}


def _input_grad(model: Callable, x: tf.Tensor, cot: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
    return tape.gradient(y, x, output_gradients=cot)


def _per_step_block(adapter, model, step) -> Callable[[], object]:
    """One eager step inside its own override_gradients block."""

    def run():
        with adapter(model, "guided"):
            return step().numpy()

    return run


def bench_tensorflow(params, x_np, cot_np, repeats: int) -> tuple[list[dict], dict]:
    ws = [(tf.constant(w), tf.constant(b)) for w, b in params]
    x, cot = tf.constant(x_np), tf.constant(cot_np)

    def mlp(x, act=None):
        for w, b in ws[:-1]:  # tf.nn.relu looked up at call time, as the block needs
            x = (act or tf.nn.relu)(x @ w + b)
        w, b = ws[-1]
        return x @ w + b

    steps = {
        "override": tf.function(lambda x: _input_grad(mlp, x, cot)),
        "plain": tf.function(lambda x: _input_grad(mlp, x, cot)),
        "by_hand": tf.function(lambda x: _input_grad(lambda v: mlp(v, bft.guided_relu), x, cot)),
    }
    for fn in steps.values():
        fn(x)  # traced once, before any block
    start = time.perf_counter()
    with bft.override_gradients(steps["override"], "guided") as report:
        steps["override"](x).numpy()
        once = {"tf.function: its retrace inside a block (s)": time.perf_counter() - start}

        def run(name: str) -> Callable[[], object]:
            return lambda: steps[name](x).numpy()

        mode = "tf.function (one block)"
        rows = [
            _row("tensorflow", mode, "plain gradient of the same model",
                 median_ratio(run("override"), run("plain"), repeats)),
            _row("tensorflow", mode, "the model written with guided_relu",
                 median_ratio(run("override"), run("by_hand"), repeats)),
        ]  # fmt: skip
    assert report.complete and report.seen == 2
    f = steps["override"]
    tf.config.run_functions_eagerly(True)
    try:
        mode = "eager (run_functions_eagerly), a block per step"
        ours = _per_step_block(bft.override_gradients, f, lambda: f(x))
        rows += [
            _row("tensorflow", mode, "plain gradient of the same model",
                 median_ratio(ours, run("plain"), repeats)),
            _row("tensorflow", mode, "the model written with guided_relu",
                 median_ratio(ours, run("by_hand"), repeats)),
        ]  # fmt: skip
    finally:
        tf.config.run_functions_eagerly(False)
    start = time.perf_counter()
    for _ in range(100):
        with bft.override_gradients(f, "guided"):
            pass
    once["tensorflow: an empty block, enter + exit (ms)"] = (time.perf_counter() - start) * 10
    return rows, once


def _keras_mlp(params, act) -> keras.Model:
    layers = [keras.Input((SIZES[0],))]
    layers += [keras.layers.Dense(w.shape[1], activation=act) for w, _ in params[:-1]]
    layers.append(keras.layers.Dense(SIZES[-1]))
    model = keras.Sequential(layers)
    for layer, (w, b) in zip(model.layers, params, strict=True):
        layer.set_weights([w, b])
    return model


def bench_keras(params, x_np, cot_np, repeats: int) -> tuple[list[dict], dict]:
    x, cot = tf.constant(x_np), tf.constant(cot_np)
    model, by_hand = _keras_mlp(params, "relu"), _keras_mlp(params, bfk.guided_relu)
    eager = {name: (lambda m=m: _input_grad(m, x, cot).numpy())
             for name, m in (("plain", model), ("by_hand", by_hand))}  # fmt: skip
    mode = "eager, a block per step"
    ours = _per_step_block(bfk.override_gradients, model, lambda: _input_grad(model, x, cot))
    with bfk.override_gradients(model, "guided") as report:
        _input_grad(model, x, cot)
    assert report.complete and report.seen == 2
    rows = [
        _row("keras (tensorflow)", mode, "plain gradient of the same model",
             median_ratio(ours, eager["plain"], repeats)),
        _row("keras (tensorflow)", mode, "the model written with guided_relu",
             median_ratio(ours, eager["by_hand"], repeats)),
    ]  # fmt: skip
    steps = {name: tf.function(lambda x, m=m: _input_grad(m, x, cot))
             for name, m in (("override", model), ("plain", model), ("by_hand", by_hand))}  # fmt: skip
    for fn in steps.values():
        fn(x)
    with bft.override_gradients(steps["override"], "guided") as report:
        steps["override"](x)

        def run(name: str) -> Callable[[], object]:
            return lambda: steps[name](x).numpy()

        mode = "tf.function (one block)"
        rows += [
            _row("keras (tensorflow)", mode, "plain gradient of the same model",
                 median_ratio(run("override"), run("plain"), repeats)),
            _row("keras (tensorflow)", mode, "the model written with guided_relu",
                 median_ratio(run("override"), run("by_hand"), repeats)),
        ]  # fmt: skip
    assert report.complete and report.seen == 2
    start = time.perf_counter()
    for _ in range(100):
        with bfk.override_gradients(model, "guided"):
            pass
    once = {"keras: an empty block, enter + exit (ms)": (time.perf_counter() - start) * 10}
    return rows, once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 30 s)")
    args = parser.parse_args(argv)
    repeats = 7 if args.quick else 31
    rng = np.random.default_rng(0)
    params = weights(rng)
    x_np = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    cot_np = rng.standard_normal((BATCH, SIZES[-1])).astype(np.float32)
    tf_rows, tf_once = bench_tensorflow(params, x_np, cot_np, repeats)
    keras_rows, keras_once = bench_keras(params, x_np, cot_np, repeats)
    rows, once = tf_rows + keras_rows, {**tf_once, **keras_once}
    sizes = " -> ".join(map(str, SIZES))
    print(f"guided input gradient of a ReLU MLP ({sizes}, batch {BATCH}, float32), "
          f"median of {repeats}; target ratio <= 1.2 against the plain gradient\n")  # fmt: skip
    print("| framework | mode | baseline | override (ms) | baseline (ms) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['framework']} | {r['mode']} | {r['baseline']} | {r['ours_ms']:.2f} "
              f"| {r['baseline_ms']:.2f} | {r['ratio']:.2f} |")  # fmt: skip
    print()
    for name, value in once.items():
        print(f"one-time: {name}: {value:.3f}")
    out = Path(__file__).parent / "out" / "override_tf_keras.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"batch": BATCH, "sizes": SIZES, "repeats": repeats, "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "tf_threads": 1,
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "blas_threads": {v: os.environ[v] for v in _THREADS}}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows, "one_time": once}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
