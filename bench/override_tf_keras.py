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
import os
import time
from collections.abc import Callable

from _timing import MLP_SIZES, mlp_problem, one_blas_thread, override_rows, write_override_table

one_blas_thread()  # before numpy loads BLAS
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import backflip.keras as bfk  # noqa: E402
import backflip.tensorflow as bft  # noqa: E402


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

        rows = override_rows("tensorflow", "tf.function (one block)", run("override"),
                             run("plain"), run("by_hand"), repeats)  # fmt: skip
    assert report.complete and report.seen == 2
    f = steps["override"]
    tf.config.run_functions_eagerly(True)
    try:
        ours = _per_step_block(bft.override_gradients, f, lambda: f(x))
        rows += override_rows("tensorflow", "eager (run_functions_eagerly), a block per step",
                              ours, run("plain"), run("by_hand"), repeats)  # fmt: skip
    finally:
        tf.config.run_functions_eagerly(False)
    start = time.perf_counter()
    for _ in range(100):
        with bft.override_gradients(f, "guided"):
            pass
    once["tensorflow: an empty block, enter + exit (ms)"] = (time.perf_counter() - start) * 10
    return rows, once


def _keras_mlp(params, act) -> keras.Model:
    layers = [keras.Input((MLP_SIZES[0],))]
    layers += [keras.layers.Dense(w.shape[1], activation=act) for w, _ in params[:-1]]
    layers.append(keras.layers.Dense(MLP_SIZES[-1]))
    model = keras.Sequential(layers)
    for layer, (w, b) in zip(model.layers, params, strict=True):
        layer.set_weights([w, b])
    return model


def bench_keras(params, x_np, cot_np, repeats: int) -> tuple[list[dict], dict]:
    x, cot = tf.constant(x_np), tf.constant(cot_np)
    model, by_hand = _keras_mlp(params, "relu"), _keras_mlp(params, bfk.guided_relu)
    eager = {name: (lambda m=m: _input_grad(m, x, cot).numpy())
             for name, m in (("plain", model), ("by_hand", by_hand))}  # fmt: skip
    ours = _per_step_block(bfk.override_gradients, model, lambda: _input_grad(model, x, cot))
    with bfk.override_gradients(model, "guided") as report:
        _input_grad(model, x, cot)
    assert report.complete and report.seen == 2
    rows = override_rows("keras (tensorflow)", "eager, a block per step", ours, eager["plain"],
                         eager["by_hand"], repeats)  # fmt: skip
    steps = {name: tf.function(lambda x, m=m: _input_grad(m, x, cot))
             for name, m in (("override", model), ("plain", model), ("by_hand", by_hand))}  # fmt: skip
    for fn in steps.values():
        fn(x)
    with bft.override_gradients(steps["override"], "guided") as report:
        steps["override"](x)

        def run(name: str) -> Callable[[], object]:
            return lambda: steps[name](x).numpy()

        rows += override_rows("keras (tensorflow)", "tf.function (one block)", run("override"),
                              run("plain"), run("by_hand"), repeats)  # fmt: skip
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
    params, x_np, cot_np = mlp_problem()
    tf_rows, tf_once = bench_tensorflow(params, x_np, cot_np, repeats)
    keras_rows, keras_once = bench_keras(params, x_np, cot_np, repeats)
    write_override_table("override_tf_keras", repeats, tf_rows + keras_rows,
                         {**tf_once, **keras_once}, tf_threads=1, tensorflow=tf.__version__,
                         keras=keras.__version__)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
