"""Property-based conformance (Hypothesis) of backflip.keras against the NumPy rules.

Runs under the Keras backend of this process (the ``vjp`` fixture of conftest.py);
random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties; invalid parameters raise backflip's error alike.
"""

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402

from backflip import _properties as props  # noqa: E402

_OPS = {
    "reverse": lambda x, p: bfk.reverse_gradient(x, p["lambd"]),
    "scale": lambda x, p: bfk.scale_gradient(x, p["factor"]),
    "clip": lambda x, p: bfk.clip_gradient(x, p["min"], p["max"]),
    "clip_norm": lambda x, p: bfk.clip_gradient_norm(x, p["max_norm"]),
    "relu_guided": lambda x, p: bfk.guided_relu(x),
    "relu_deconvnet": lambda x, p: bfk.deconvnet_relu(x),
}


@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data, vjp):
    case = data.draw(props.valid_cases(ops=(op,)), label="case")
    y, dx = vjp(lambda x: _OPS[case.op](x, case.params), case.x, case.g)
    props.check_result(case, y, dx)


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    x = keras.ops.convert_to_tensor(case.x())
    with pytest.raises(case.error, match=case.match):
        _OPS[case.op](x, case.params)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            props.PropCase("clip", {"min": 0.1, "max": None}, np.zeros(2), np.zeros(2)),
            id="clip-f64-min0.1",
        ),
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 0.1}, np.zeros(2), np.array([3.0, 4.0])),
            id="clip_norm-f64-0.1",
        ),
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 1e-300}, np.zeros(2), np.zeros(2)),
            id="clip_norm-f64-1e-300-zero-grad",
        ),
    ],
)
def test_float64_parameters_are_not_rounded_to_float32(case, vjp):
    y, dx = vjp(lambda x: _OPS[case.op](x, case.params), case.x, case.g)
    props.check_result(case, y, dx)
