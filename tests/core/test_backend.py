"""The shared backend layer (backflip._backend, backflip._activations) on NumPy.

The formulas every adapter evaluates with its own array functions are evaluated here
with NumPy (backflip._backend.NUMPY) and compared with the references of
backflip.rules, so a mistake in the shared maths fails here before any framework runs.
"""

import numpy as np
import pytest

from backflip import _activations, _backend, rules
from backflip._api import CORE_OPS

XP = _backend.NUMPY
X = np.linspace(-4.0, 4.0, 41)
G = np.cos(3.0 * X)
PARAMS = {"leaky_relu": {"negative_slope": 0.2}, "elu": {"alpha": 0.7}, "softplus": {"beta": 2.0},
          "gelu": {"approximate": "none"}}


@pytest.mark.parametrize("name, kw", [*((n, PARAMS.get(n, {})) for n in sorted(rules.ACTIVATIONS)),
                                      ("gelu", {"approximate": "tanh"})])
def test_shared_formulas_match_the_numpy_references(name, kw):
    ref = rules.ACTIVATIONS[name]
    np.testing.assert_allclose(_activations.FORWARDS[name](XP, X, **kw), ref.forward(X, **kw),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_activations.DERIVATIVES[name](XP, X, **kw),
                               ref.derivative(X, **kw), rtol=1e-12, atol=1e-12)


def test_tanh_gelu_differs_from_the_exact_one():
    exact, tanh = (rules.ACTIVATIONS["gelu"].derivative(X, approximate=a) for a in ("none", "tanh"))
    assert 1e-4 < np.abs(exact - tanh).max() < 1e-2  # close, but a different function


@pytest.mark.parametrize("rule", [*rules.RULES, lambda x, y, g: g * y])
def test_rule_backward_matches_apply_rule(rule):
    act = rules.ACTIVATIONS["silu"]
    got = _backend.rule_backward(XP, rule, lambda g: g * act.derivative(X), X, act.forward(X), G)
    want = (G * act.forward(X) if callable(rule) else rules.apply_rule(rule, "silu", X, G))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (None, 0.1), (-0.1, None)])
def test_clip_backward_matches_the_reference(lo, hi):
    np.testing.assert_array_equal(_backend.clip_backward(XP, G, lo, hi),
                                  rules.clip_backward(G, lo, hi))


@pytest.mark.parametrize(
    "g, max_norm",
    [(np.array([3.0, 4.0]), 1.0),  # clipped: norm 5
     (np.array([3.0, 4.0]), 10.0),  # not clipped
     (np.zeros(3), 1.0),  # a zero gradient stays zero (no 0/0)
     (np.array([1e9], np.float32), 1e-30),  # a tiny max_norm: no underflow to 0
     (np.array([1e9], np.float32), 1e300),  # beyond float32: inf, no clipping, no overflow
     (np.array([3e10, 4e10]), 1e300)],  # g * max_norm would overflow float64
)
def test_clip_norm_backward_matches_the_reference(g, max_norm):
    got = _backend.clip_norm_backward(XP, g, max_norm)
    np.testing.assert_allclose(got, rules.clip_norm_backward(g, max_norm), rtol=1e-6, atol=0)
    assert np.isfinite(got).all()


def test_export_builds_the_eight_functions_with_their_notes():
    notes = {name: f">>> 1 + 1  # {name}\n2" for name in CORE_OPS}
    ops = _backend.export(_backend.Backend(), "example.module", notes)
    assert sorted(vars(ops)) == sorted(CORE_OPS)
    fn = ops.reverse_gradient
    assert fn.__module__ == "example.module" and fn.__qualname__ == "reverse_gradient"
    assert fn.__doc__.startswith("Gradient reversal") and "# reverse_gradient" in fn.__doc__
    with pytest.raises(NotImplementedError):  # a Backend must supply its primitives
        fn(np.ones(2), 0.5)


@pytest.mark.parametrize("rule", rules.RULES)
def test_relu_backward_matches_apply_rule(rule):
    y = np.maximum(X, 0.0)
    np.testing.assert_array_equal(_backend.relu_backward(XP, rule, y, G),
                                  rules.apply_rule(rule, "relu", X, G))
