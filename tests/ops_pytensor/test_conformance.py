"""Every row of backflip.conformance.CASES through backflip.pytensor."""

import numpy as np
import pytest

from backflip._api import CORE_OPS
from backflip._testing import require_backend
from backflip.conformance import CASES, MLP_WEIGHTS, Case, case_ids

pytensor = require_backend("pytensor")
import pytensor.tensor as pt  # noqa: E402

import backflip.pytensor as bfp  # noqa: E402

MODE = "FAST_COMPILE"  # what is tested here is the graph, not the C compiler


@bfp.custom_gradient
def _cube_linear_grad(x):
    return x**3, lambda g: g * x


def _forward(case: Case, x):
    p = case.params
    if case.op == "reverse":
        return bfp.reverse_gradient(x, p["lambd"])
    if case.op == "scale":
        return bfp.scale_gradient(x, p["factor"])
    if case.op == "clip":
        return bfp.clip_gradient(x, p.get("min"), p.get("max"))
    if case.op == "clip_norm":
        return bfp.clip_gradient_norm(x, p["max_norm"])
    if case.op == "custom":
        return _cube_linear_grad(x)
    if case.op == "relu_guided":
        return bfp.guided_relu(x)
    if case.op == "relu_deconvnet":
        return bfp.deconvnet_relu(x)
    raise AssertionError(case.op)


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(case):
    x_val, g_val = case.inputs()
    x = pt.tensor("x", dtype=case.dtype, shape=(None,) * x_val.ndim)
    g = pt.tensor("g", dtype=case.dtype, shape=(None,) * g_val.ndim)
    if case.op == "reverse_double":
        h = pt.sum(bfp.reverse_gradient(x, case.params["lambd"]) ** 3) / 3
        y = x
        dx = pt.grad(pt.sum(g * pt.grad(h, x)), x)  # a Hessian-vector product
    elif case.op == "override":
        w1, b1, w2, b2 = MLP_WEIGHTS
        out = pt.maximum(pt.maximum(x @ w1 + b1, 0) @ w2 + b2, 0)
        y, report = bfp.override_gradients(out, case.rule())
        assert (report.seen, report.overridden) == (2, 2)
        dx = pt.grad(None, x, known_grads={y: g})
    else:
        y = _forward(case, x)
        dx = pt.grad(None, x, known_grads={y: g})
    fn = pytensor.function([x, g], [y, dx], mode=MODE, on_unused_input="ignore")
    y_out, dx_out = fn(x_val, g_val)
    want_y, want_dx = case.expected()
    assert y_out.dtype == want_y.dtype and dx_out.dtype == want_dx.dtype
    tol = case.tolerance()
    np.testing.assert_allclose(y_out, want_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx_out, want_dx, rtol=tol, atol=tol)


def test_all_exports_core_ops():
    assert set(CORE_OPS) <= set(bfp.__all__)
    for name in CORE_OPS:
        assert callable(getattr(bfp, name))
