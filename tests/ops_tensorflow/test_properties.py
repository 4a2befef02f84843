"""Property-based conformance (Hypothesis) of backflip.tensorflow against the NumPy rules.

Random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties; invalid parameters raise backflip's error alike.
"""

import numpy as np
import pytest

from backflip._testing import require_backend

tf = require_backend("tensorflow")
bft = require_backend("backflip.tensorflow")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402

from backflip import _properties as props  # noqa: E402

_OPS = {
    "reverse": lambda x, p: bft.reverse_gradient(x, p["lambd"]),
    "scale": lambda x, p: bft.scale_gradient(x, p["factor"]),
    "clip": lambda x, p: bft.clip_gradient(x, p["min"], p["max"]),
    "clip_norm": lambda x, p: bft.clip_gradient_norm(x, p["max_norm"]),
    "relu_guided": lambda x, p: bft.guided_relu(x),
    "relu_deconvnet": lambda x, p: bft.deconvnet_relu(x),
}


@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data):
    case = data.draw(props.valid_cases(ops=(op,)), label="case")
    x, g = tf.constant(case.x), tf.constant(case.g)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = _OPS[case.op](x, case.params)
    dx = tape.gradient(y, x, output_gradients=g)
    props.check_result(case, y.numpy(), dx.numpy())


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    x = tf.constant(case.x())
    with pytest.raises(case.error, match=case.match):
        _OPS[case.op](x, case.params)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 1e30}, np.zeros(1, "float32"),
                           np.array([1e9], "float32")),
            id="f32-max_norm1e30",
        ),
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 1e300}, np.zeros(2), np.array([3e10, 4e10])),
            id="f64-max_norm1e300",
        ),
    ],
)
def test_clip_norm_huge_max_norm_does_not_overflow(case):
    """``tf.clip_by_norm`` computes ``g * max_norm`` first and overflows here; ours does not."""
    x, g = tf.constant(case.x), tf.constant(case.g)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = _OPS[case.op](x, case.params)
    props.check_result(case, y.numpy(), tape.gradient(y, x, output_gradients=g).numpy())
