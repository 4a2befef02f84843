"""Property-based conformance (Hypothesis) of backflip.jax against the NumPy rules.

Random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties; invalid parameters raise backflip's error alike.
float64 examples run under ``jax.enable_x64``.
"""

import numpy as np
import pytest

from backflip._testing import require_backend

jax = require_backend("jax")
hypothesis = pytest.importorskip("hypothesis")
import jax.numpy as jnp  # noqa: E402
from hypothesis import given  # noqa: E402

import backflip.jax as bfj  # noqa: E402
from backflip import _properties as props  # noqa: E402

_OPS = {
    "reverse": lambda x, p: bfj.reverse_gradient(x, p["lambd"]),
    "scale": lambda x, p: bfj.scale_gradient(x, p["factor"]),
    "clip": lambda x, p: bfj.clip_gradient(x, p["min"], p["max"]),
    "clip_norm": lambda x, p: bfj.clip_gradient_norm(x, p["max_norm"]),
    "relu_guided": lambda x, p: bfj.guided_relu(x),
    "relu_deconvnet": lambda x, p: bfj.deconvnet_relu(x),
}


@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data):
    case = data.draw(props.valid_cases(ops=(op,)), label="case")
    with jax.enable_x64(case.dtype == "float64"):
        y, vjp = jax.vjp(lambda x: _OPS[case.op](x, case.params), jnp.asarray(case.x))
        (dx,) = vjp(jnp.asarray(case.g))
        props.check_result(case, np.asarray(y), np.asarray(dx))


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    with jax.enable_x64(case.dtype == "float64"):
        x = jnp.asarray(case.x())
        with pytest.raises(case.error, match=case.match):
            _OPS[case.op](x, case.params)
