"""A small Keras DANN on two moons beats source-only training on the rotated target.

Source: sklearn's two moons; target: the same distribution rotated by 35 degrees,
no target labels used. One shared model, with the domain loss switched off for
source-only training; λ follows the paper's schedule via DANNLambdaScheduler.
Measured (TensorFlow backend, 500 target test points, seeds 0/1/2/3): source-only
0.660/0.662/0.658/0.620, DANN 0.922/0.788/0.928/0.708 target accuracy (margin
+0.26/+0.13/+0.27/+0.09). The test runs seed 0 and asks for a margin of 0.10.
"""

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
datasets = require_backend("sklearn.datasets")


def _moons(n, seed, degrees=0.0):
    x, y = datasets.make_moons(n, noise=0.1, random_state=seed)
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return ((x - [0.5, 0.25]) @ rotation.T).astype("float32"), y.astype("int64")


def _train(adapt, xs, ys, xt, seed=0):
    keras.utils.set_random_seed(seed)
    src, tgt = keras.Input((2,)), keras.Input((2,))
    features = keras.Sequential([keras.layers.Dense(32, activation="relu"),
                                 keras.layers.Dense(32, activation="relu")])
    label = keras.layers.Dense(2)
    grl = bfk.GradientReversal(0.0)
    domain = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    fs, ft = features(src), features(tgt)
    model = keras.Model([src, tgt], [label(fs), domain(grl(fs)), domain(grl(ft))])
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(0.005),
                  [keras.losses.SparseCategoricalCrossentropy(from_logits=True), bce, bce],
                  loss_weights=[1.0, 0.5 * adapt, 0.5 * adapt])
    n = len(xs)
    model.fit([xs, xt], [ys, np.zeros((n, 1), "float32"), np.ones((n, 1), "float32")],
              batch_size=32, epochs=60, verbose=0, callbacks=[bfk.DANNLambdaScheduler()])
    return keras.Model(src, label(fs))


def _accuracy(classifier, x, y):
    logits = keras.ops.convert_to_numpy(classifier.predict(x, verbose=0))
    return float((logits.argmax(1) == y).mean())


@pytest.mark.slow
def test_keras_dann_beats_source_only_on_rotated_moons():
    xs, ys = _moons(300, seed=0)
    xt, _ = _moons(300, seed=1, degrees=35.0)  # unlabelled target for training
    x_test, y_test = _moons(500, seed=2, degrees=35.0)
    source_only = _train(0.0, xs, ys, xt)
    dann = _train(1.0, xs, ys, xt)
    acc_src, acc_dann = _accuracy(source_only, x_test, y_test), _accuracy(dann, x_test, y_test)
    assert _accuracy(dann, xs, ys) > 0.95  # still solves the source task
    assert acc_dann >= acc_src + 0.10, f"DANN {acc_dann:.3f} vs source-only {acc_src:.3f}"
    assert acc_dann >= 0.8
