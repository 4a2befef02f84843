"""The shared conformance table (backflip.conformance.CASES) through backflip.keras.

Runs under the Keras backend of this process; test_backends.py runs it again under
every other backend, one subprocess each.
"""

import numpy as np
import pytest

from backflip._testing import require_backend
from backflip.conformance import CASES, MLP_WEIGHTS, case_ids

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
ops = keras.ops


@bfk.custom_gradient
def _cube_with_linear_grad(x):
    return x**3, lambda g: g * x


def _op(case):
    p = case.params
    return {
        "reverse": lambda x: bfk.reverse_gradient(x, p.get("lambd")),
        "scale": lambda x: bfk.scale_gradient(x, p.get("factor")),
        "clip": lambda x: bfk.clip_gradient(x, p.get("min"), p.get("max")),
        "clip_norm": lambda x: bfk.clip_gradient_norm(x, p.get("max_norm")),
        "custom": _cube_with_linear_grad,
        "relu_guided": bfk.guided_relu,
        "relu_deconvnet": bfk.deconvnet_relu,
    }[case.op]


def _mlp():
    """The conformance network (backflip.conformance.mlp) as two float64 Dense layers."""
    w1, b1, w2, b2 = MLP_WEIGHTS
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            keras.layers.Dense(5, activation="relu", dtype="float64"),
            keras.layers.Dense(3, activation="relu", dtype="float64"),
        ]
    )
    model.set_weights([w1, b1, w2, b2])
    return model


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(case, vjp, hvp):
    x, g = case.inputs()
    if case.op == "override":
        model = _mlp()
        with bfk.override_gradients(model, case.rule()) as report:
            y, dx = vjp(model, x, g)
        assert (report.seen, report.overridden) == (2, 2)
    elif case.op == "reverse_double":
        lambd = case.params["lambd"]
        y = x
        dx = hvp(lambda x: ops.sum(bfk.reverse_gradient(x, lambd) ** 3) / 3, x, g)
    else:
        y, dx = vjp(_op(case), x, g)
    y_ref, dx_ref = case.expected()
    tol = case.tolerance()
    if case.op == "override" and keras.backend.backend() == "torch":
        # Keras' torch matmul computes float64 in float32 (its dtypes.result_type(torch.float64,
        # torch.float64) is "float32"): the plain forward is already ~4e-7 from NumPy.
        tol = max(tol, 1e-5)
    assert y.dtype == case.dtype and dx.dtype == case.dtype
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
