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


# clip_gradient and clip_gradient_norm round their bounds / max_norm through float32
# on a float64 gradient under the TensorFlow backend (see the xfail examples below):
# drawn exact in float32 here. Under the torch backend their float64 gradients come
# back with float32 precision (a relative error ~1e-8, not yet pinned down): float32 only.
_F32 = ("clip", "clip_norm")
_DTYPES_TORCH = ("float32",)


@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data, vjp):
    dtypes = _DTYPES_TORCH if keras.backend.backend() == "torch" and op in _F32 else props.DTYPES
    case = data.draw(props.valid_cases(ops=(op,), dtypes=dtypes, f32_params=_F32), label="case")
    y, dx = vjp(lambda x: _OPS[case.op](x, case.params), case.x, case.g)
    props.check_result(case, y, dx)


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    x = keras.ops.convert_to_tensor(case.x())
    with pytest.raises(case.error, match=case.match):
        _OPS[case.op](x, case.params)


_ROUNDS = "keras.ops.cast(python_float, float64) goes through float32: the parameter is rounded"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            props.PropCase("clip", {"min": 0.1, "max": None}, np.zeros(2), np.zeros(2)),
            marks=pytest.mark.xfail(strict=True, reason=_ROUNDS + " (0.10000000149)"),
            id="clip-f64-min0.1",
        ),
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 0.1}, np.zeros(2), np.array([3.0, 4.0])),
            marks=pytest.mark.xfail(strict=True, reason=_ROUNDS),
            id="clip_norm-f64-0.1",
        ),
        pytest.param(
            props.PropCase("clip_norm", {"max_norm": 1e-300}, np.zeros(2), np.zeros(2)),
            marks=pytest.mark.xfail(strict=True, reason=_ROUNDS + " to 0: 0/0 = NaN"),
            id="clip_norm-f64-1e-300-zero-grad",
        ),
    ],
)
def test_float64_parameters_are_not_rounded_to_float32(case, vjp):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the rounding was seen (and is marked) under the TensorFlow backend")
    y, dx = vjp(lambda x: _OPS[case.op](x, case.params), case.x, case.g)
    props.check_result(case, y, dx)
