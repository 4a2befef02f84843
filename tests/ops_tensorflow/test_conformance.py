"""The shared conformance table (backflip.conformance.CASES) through backflip.tensorflow."""

import numpy as np
import pytest

from backflip._testing import require_backend
from backflip.conformance import CASES, MLP_WEIGHTS, case_ids

tf = require_backend("tensorflow")
bft = require_backend("backflip.tensorflow")


@bft.custom_gradient
def _cube_with_linear_grad(x):
    return x**3, lambda g: g * x


def _op(case):
    p = case.params
    return {
        "reverse": lambda x: bft.reverse_gradient(x, p.get("lambd")),
        "scale": lambda x: bft.scale_gradient(x, p.get("factor")),
        "clip": lambda x: bft.clip_gradient(x, p.get("min"), p.get("max")),
        "clip_norm": lambda x: bft.clip_gradient_norm(x, p.get("max_norm")),
        "custom": _cube_with_linear_grad,
        "relu_guided": bft.guided_relu,
        "relu_deconvnet": bft.deconvnet_relu,
    }[case.op]


@tf.function
def _mlp(x):
    w1, b1, w2, b2 = (tf.constant(w) for w in MLP_WEIGHTS)
    return tf.nn.relu(tf.nn.relu(x @ w1 + b1) @ w2 + b2)


def _run(case):
    x_np, g_np = case.inputs()
    x, g = tf.constant(x_np), tf.constant(g_np)
    if case.op == "override":
        with bft.override_gradients(_mlp, case.rule()) as report, tf.GradientTape() as tape:
            tape.watch(x)
            y = _mlp(x)
        assert (report.seen, report.overridden) == (2, 2)
        return y, tape.gradient(y, x, output_gradients=g)
    if case.op == "reverse_double":  # Hessian-vector product through the reversal
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                h = tf.reduce_sum(bft.reverse_gradient(x, case.params["lambd"]) ** 3) / 3
            hvp = tf.reduce_sum(g * inner.gradient(h, x))
        return x, outer.gradient(hvp, x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = _op(case)(x)
    return y, tape.gradient(y, x, output_gradients=g)


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(case):
    y, dx = _run(case)
    y_ref, dx_ref = case.expected()
    tol = case.tolerance()
    assert y.dtype.name == case.dtype and dx.dtype.name == case.dtype
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx.numpy(), dx_ref, rtol=tol, atol=tol)
