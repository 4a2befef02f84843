"""Every row of backflip.conformance.CASES through backflip.jax."""

import numpy as np
import pytest

from backflip._api import CORE_OPS
from backflip._testing import require_backend
from backflip.conformance import CASES, MLP_WEIGHTS, Case, case_ids

jax = require_backend("jax")
import jax.numpy as jnp  # noqa: E402

import backflip.jax as bfj  # noqa: E402


@bfj.custom_gradient
def _cube_linear_grad(x):
    return x**3, lambda g: g * x


def _forward(case: Case, x):
    p = case.params
    if case.op == "reverse":
        return bfj.reverse_gradient(x, p["lambd"])
    if case.op == "scale":
        return bfj.scale_gradient(x, p["factor"])
    if case.op == "clip":
        return bfj.clip_gradient(x, p.get("min"), p.get("max"))
    if case.op == "clip_norm":
        return bfj.clip_gradient_norm(x, p["max_norm"])
    if case.op == "custom":
        return _cube_linear_grad(x)
    if case.op == "relu_guided":
        return bfj.guided_relu(x)
    if case.op == "relu_deconvnet":
        return bfj.deconvnet_relu(x)
    raise AssertionError(case.op)


def _mlp(x):
    w1, b1, w2, b2 = (jnp.asarray(w) for w in MLP_WEIGHTS)
    return jax.nn.relu(jax.nn.relu(x @ w1 + b1) @ w2 + b2)


def _run(case: Case):
    x, g = (jnp.asarray(a) for a in case.inputs())
    if case.op == "override":
        fn, report = bfj.override_gradients(_mlp, case.rule())
        y, vjp = jax.vjp(jax.jit(fn), x)
        assert (report.seen, report.overridden) == (2, 2)
        return y, vjp(g)[0]
    if case.op == "reverse_double":
        lambd = case.params["lambd"]

        def h(x):
            return jnp.sum(bfj.reverse_gradient(x, lambd) ** 3) / 3

        # gradient of sum(g * h'(x)): a Hessian-vector product through the reversal
        dx = jax.grad(lambda x: jnp.sum(g * jax.grad(h)(x)))(x)
        return x, dx
    y, vjp = jax.vjp(lambda x: _forward(case, x), x)
    return y, vjp(g)[0]


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(case):
    with jax.enable_x64(case.dtype == "float64"):
        y, dx = _run(case)
        want_y, want_dx = case.expected()
        assert y.dtype == want_y.dtype and dx.dtype == want_dx.dtype
        tol = case.tolerance()
        np.testing.assert_allclose(np.asarray(y), want_y, rtol=tol, atol=tol)
        np.testing.assert_allclose(np.asarray(dx), want_dx, rtol=tol, atol=tol)


def test_all_exports_core_ops():
    assert set(CORE_OPS) <= set(bfj.__all__)
    for name in CORE_OPS:
        assert callable(getattr(bfj, name))
