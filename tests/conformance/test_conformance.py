"""Every row of backflip.conformance.CASES through every adapter (the README's table).

One test, parametrized over the backends (the ``driver`` fixture, conftest.py) and the
cases; tests/conftest.py records each outcome, node id ``test_conformance[<backend>-<case>]``,
for ``make conformance``. The Keras column runs here under this process's Keras backend,
and under the other two from tests/ops_keras/test_backends.py.
"""

import numpy as np
import pytest

from backflip.conformance import CASES, Case, case_ids


def _cube_with_linear_grad(x):
    """The ``custom`` op: ``y = x**3`` with the deliberately wrong backward ``g * x``."""
    return x**3, lambda g: g * x


def _forwards(bf, case: Case):
    """The adapter's functions computing ``case`` (the ReLU rules both ways)."""
    p = case.params
    return {
        "reverse": [lambda x: bf.reverse_gradient(x, p["lambd"])],
        "scale": [lambda x: bf.scale_gradient(x, p["factor"])],
        "clip": [lambda x: bf.clip_gradient(x, p.get("min"), p.get("max"))],
        "clip_norm": [lambda x: bf.clip_gradient_norm(x, p["max_norm"])],
        "custom": [bf.custom_gradient(_cube_with_linear_grad)],
        "relu_guided": [bf.guided_relu, lambda x: bf.activation_with_rule(x, "relu", "guided")],
        "relu_deconvnet": [bf.deconvnet_relu,
                           lambda x: bf.activation_with_rule(x, "relu", "deconvnet")],
    }[case.op]


def _results(driver, case: Case):
    """``[(y, dx), ...]``: the case through the adapter (one pair per way to compute it)."""
    x, g = case.inputs()
    if case.op == "override":
        y, dx, report = driver.override_vjp(case.rule(), x, g)
        assert (report.seen, report.overridden) == (2, 2)  # both ReLUs found and rewritten
        return [(y, dx)]
    if case.op == "reverse_double":  # a Hessian-vector product through the reversal
        lambd, bf = case.params["lambd"], driver.bf
        return [(x, driver.hvp(lambda t: driver.sum(bf.reverse_gradient(t, lambd) ** 3) / 3,
                                x, g))]
    return [driver.vjp(fn, x, g) for fn in _forwards(driver.bf, case)]


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_conformance(driver, case):
    with driver.context(case):
        results = _results(driver, case)
    y_want, dx_want = case.expected()
    tol = driver.tolerance(case)
    for y, dx in results:
        assert (y.dtype, dx.dtype) == (np.dtype(case.dtype),) * 2
        np.testing.assert_allclose(y, y_want, rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, dx_want, rtol=tol, atol=tol)
