"""Property-based conformance (Hypothesis): every op of every adapter against the NumPy rules.

Random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties, through each backend's ``driver`` (conftest.py; JAX
runs the float64 examples under ``jax.enable_x64``, PyTensor builds and compiles a graph);
invalid parameters raise backflip's error alike, when the graph is built for PyTensor.
The Keras column runs here under this process's Keras backend and under the other two
from tests/ops_keras/test_backends.py.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402

from backflip import _properties as props  # noqa: E402


def _op(bf, case):
    p = case.params
    return {
        "reverse": lambda x: bf.reverse_gradient(x, p["lambd"]),
        "scale": lambda x: bf.scale_gradient(x, p["factor"]),
        "clip": lambda x: bf.clip_gradient(x, p["min"], p["max"]),
        "clip_norm": lambda x: bf.clip_gradient_norm(x, p["max_norm"]),
        "relu_guided": bf.guided_relu,
        "relu_deconvnet": bf.deconvnet_relu,
    }[case.op]


def _check(driver, case):
    with driver.context(case):
        y, dx = driver.vjp(_op(driver.bf, case), case.x, case.g)
    props.check_result(case, y, dx)


# a float64 max_norm just above float32's range makes PyTensor's autocaster warn
# (it tries float32 first): harmless here, the result is still checked
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(driver, op, data):
    _check(driver, data.draw(props.valid_cases(ops=(op,)), label="case"))


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(driver, case):
    with driver.context(case):
        x = driver.input(case.x())
        with pytest.raises(case.error, match=case.match):
            _op(driver.bf, case)(x)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(
    "case",
    [
        # tf.clip_by_norm computes g * max_norm first and overflowed to inf on these
        props.PropCase("clip_norm", {"max_norm": 1e30}, np.zeros(1, "float32"),
                       np.array([1e9], "float32")),
        props.PropCase("clip_norm", {"max_norm": 1e300}, np.zeros(2), np.array([3e10, 4e10])),
        # keras.ops rounded float64 parameters through float32 (0.10000000149; 1e-300 to 0)
        props.PropCase("clip", {"min": 0.1, "max": None}, np.zeros(2), np.zeros(2)),
        props.PropCase("clip_norm", {"max_norm": 0.1}, np.zeros(2), np.array([3.0, 4.0])),
        props.PropCase("clip_norm", {"max_norm": 1e-300}, np.zeros(2), np.zeros(2)),
    ],
    ids=["f32-max_norm1e30", "f64-max_norm1e300", "clip-f64-min0.1", "clip_norm-f64-0.1",
         "clip_norm-f64-1e-300-zero-grad"],
)
def test_edge_parameters(driver, case):
    _check(driver, case)
