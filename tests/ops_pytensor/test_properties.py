"""Property-based conformance (Hypothesis) of backflip.pytensor against the NumPy rules.

Random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties; invalid parameters raise backflip's error alike
(when the graph is built).
"""

import pytest

from backflip._testing import require_backend

pytensor = require_backend("pytensor")
hypothesis = pytest.importorskip("hypothesis")
import pytensor.tensor as pt  # noqa: E402
from hypothesis import given  # noqa: E402

import backflip.pytensor as bfp  # noqa: E402
from backflip import _properties as props  # noqa: E402

MODE = "FAST_COMPILE"  # what is tested here is the graph, not the C compiler

_OPS = {
    "reverse": lambda x, p: bfp.reverse_gradient(x, p["lambd"]),
    "scale": lambda x, p: bfp.scale_gradient(x, p["factor"]),
    "clip": lambda x, p: bfp.clip_gradient(x, p["min"], p["max"]),
    "clip_norm": lambda x, p: bfp.clip_gradient_norm(x, p["max_norm"]),
    "relu_guided": lambda x, p: bfp.guided_relu(x),
    "relu_deconvnet": lambda x, p: bfp.deconvnet_relu(x),
}


# a float64 max_norm just above float32's range makes PyTensor's autocaster warn
# (it tries float32 first): harmless here, the result is still checked
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data):
    case = data.draw(props.valid_cases(ops=(op,)), label="case")
    ndim = case.x.ndim
    x = pt.tensor("x", dtype=case.dtype, shape=(None,) * ndim)
    g = pt.tensor("g", dtype=case.dtype, shape=(None,) * ndim)
    y = _OPS[case.op](x, case.params)
    dx = pt.grad(None, x, known_grads={y: g})
    fn = pytensor.function([x, g], [y, dx], mode=MODE, on_unused_input="ignore")
    y_out, dx_out = fn(case.x, case.g)
    props.check_result(case, y_out, dx_out)


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    x = pt.tensor("x", dtype=case.dtype, shape=(None,) * len(case.shape))
    with pytest.raises(case.error, match=case.match):
        _OPS[case.op](x, case.params)
