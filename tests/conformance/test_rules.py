"""activation_with_rule in every adapter against the NumPy reference backflip.rules.apply_rule.

Every covered activation (with non-default parameters, GELU's tanh form included) x
every built-in rule and a user rule, through one test per backend (the ``driver``
fixture). The shared maths (backflip._activations over a NumPy namespace) is checked
against the same references in tests/core/test_backend.py.
"""

import numpy as np
import pytest

from backflip.rules import ACTIVATIONS, RULES, apply_rule

X = np.array([-2.5, -1.0, -0.3, 0.2, 0.7, 3.0], np.float32)
G = np.array([1.5, -0.5, 2.0, -1.0, 0.8, 1.0], np.float32)

PARAMS = {
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 0.7},
    "softplus": {"beta": 2.0},
    "gelu_tanh": {"approximate": "tanh"},
}
CASES = [(a, a) for a in sorted(ACTIVATIONS)] + [("gelu_tanh", "gelu")]


def _user_rule(x, y, g):
    """A user rule written with operators only, so it runs in every framework: g * y."""
    return g * y


@pytest.mark.parametrize("rule", [*RULES, _user_rule], ids=[*RULES, "user"])
@pytest.mark.parametrize("case, activation", CASES, ids=[c for c, _ in CASES])
def test_activation_with_rule_matches_numpy(driver, case, activation, rule):
    params = PARAMS.get(case, {})
    y, dx = driver.vjp(
        lambda x: driver.bf.activation_with_rule(x, activation, rule, **params), X, G)
    kw = {**ACTIVATIONS[activation].params, **params}
    x64 = X.astype(np.float64)
    np.testing.assert_allclose(y, ACTIVATIONS[activation].forward(x64, **kw), rtol=2e-6, atol=2e-6)
    want = (G * ACTIVATIONS[activation].forward(x64, **kw) if rule is _user_rule
            else apply_rule(rule, activation, X, G, **params))
    np.testing.assert_allclose(dx, want, rtol=2e-5, atol=2e-6)
    assert dx.dtype == np.float32
