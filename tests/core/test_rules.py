import numpy as np
import pytest

from backflip import BackflipValueError, rules
from backflip.conformance import CASES, Case


def _numeric_derivative(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("name", list(rules.ACTIVATIONS))
def test_activation_derivatives_are_true_derivatives(name):
    act = rules.ACTIVATIONS[name]
    x = np.array([-2.3, -0.7, -0.1, 0.2, 0.9, 3.1])  # avoid the kink at 0
    np.testing.assert_allclose(act.derivative(x), _numeric_derivative(act.forward, x), rtol=1e-5, atol=1e-7)


def test_guided_and_deconvnet_relu_by_hand():
    x = np.array([1.0, 1.0, -1.0, -1.0])
    g = np.array([2.0, -2.0, 2.0, -2.0])
    np.testing.assert_array_equal(rules.apply_rule("vanilla", "relu", x, g), [2.0, -2.0, 0.0, 0.0])
    np.testing.assert_array_equal(rules.apply_rule("guided", "relu", x, g), [2.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(rules.apply_rule("deconvnet", "relu", x, g), [2.0, 0.0, 2.0, 0.0])


def test_guided_for_a_smooth_activation_masks_the_true_derivative():
    x = np.array([-1.0, 0.5, 2.0])
    g = np.array([1.0, -1.0, 3.0])
    d = rules.ACTIVATIONS["silu"].derivative(x)
    np.testing.assert_allclose(rules.apply_rule("guided", "silu", x, g), [d[0], 0.0, 3.0 * d[2]])


def test_user_rule_gets_input_output_and_upstream():
    seen = {}

    def rule(x, y, g):
        seen.update(x=x, y=y, g=g)
        return g * 10

    out = rules.apply_rule(rule, "relu", np.array([-1.0, 2.0]), np.array([1.0, 1.0]))
    np.testing.assert_array_equal(out, [10.0, 10.0])
    np.testing.assert_array_equal(seen["y"], [0.0, 2.0])


def test_unknown_activation_and_rule_are_named():
    with pytest.raises(BackflipValueError, match=r"no gradient rule covers the activation 'tanh'; covered: relu"):
        rules.get_activation("tanh")
    with pytest.raises(BackflipValueError, match=r"unknown gradient rule 'smooth'; use one of vanilla"):
        rules.apply_rule("smooth", "relu", np.ones(2), np.ones(2))


def test_clip_norm_reference():
    g = np.array([3.0, 4.0])
    np.testing.assert_allclose(rules.clip_norm_backward(g, 1.0), [0.6, 0.8])
    np.testing.assert_allclose(rules.clip_norm_backward(g, 10.0), [3.0, 4.0])
    np.testing.assert_array_equal(rules.clip_norm_backward(np.zeros(2), 1.0), [0.0, 0.0])


def test_conformance_table_is_well_formed():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    ops = {c.op for c in CASES}
    assert ops == {"reverse", "scale", "clip", "clip_norm", "custom", "relu_guided", "relu_deconvnet", "reverse_double",
                   "override"}
    assert {c.params["lambd"] for c in CASES if c.op == "reverse"} >= {0.0, 0.5, 1.0, 3.0}
    for case in CASES:
        x, g = case.inputs()
        y, dx = case.expected()
        assert x.dtype == g.dtype == y.dtype == dx.dtype == np.dtype(case.dtype)
        assert x.shape == dx.shape == case.shape
        # the same seed gives the same inputs
        np.testing.assert_array_equal(case.inputs()[0], x)


def test_conformance_expected_values_by_hand():
    case = Case("t", "reverse_double", {"lambd": 2.0}, shape=(2,), dtype="float64")
    x, g = case.inputs()
    np.testing.assert_allclose(case.expected()[1], 4.0 * 2.0 * x * g)
    clip = Case("c", "clip", {"min": -0.1, "max": 0.1}, shape=(50,))
    assert np.abs(clip.expected()[1]).max() <= np.float32(0.1)
