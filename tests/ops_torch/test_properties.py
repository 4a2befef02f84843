"""Property-based conformance (Hypothesis) of backflip.torch against the NumPy rules.

Random ops, shapes (scalars, empty and large tensors), dtypes and parameters (0, tiny,
huge) from backflip._properties; invalid parameters raise backflip's error alike.
"""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402

from backflip import _properties as props  # noqa: E402
from backflip.torch import (  # noqa: E402
    activation_with_rule,
    clip_gradient,
    clip_gradient_norm,
    reverse_gradient,
    scale_gradient,
)

_OPS = {
    "reverse": lambda x, p: reverse_gradient(x, p["lambd"]),
    "scale": lambda x, p: scale_gradient(x, p["factor"]),
    "clip": lambda x, p: clip_gradient(x, p["min"], p["max"]),
    "clip_norm": lambda x, p: clip_gradient_norm(x, p["max_norm"]),
    "relu_guided": lambda x, p: activation_with_rule(x, "relu", "guided"),
    "relu_deconvnet": lambda x, p: activation_with_rule(x, "relu", "deconvnet"),
}


@pytest.mark.parametrize("op", props.OPS)
@props.settings(max_examples=props.PER_OP)
@given(data=hypothesis.strategies.data())
def test_matches_numpy_reference(op, data):
    case = data.draw(props.valid_cases(ops=(op,)), label="case")
    x = torch.from_numpy(case.x).requires_grad_(True)
    y = _OPS[case.op](x, case.params)
    (dx,) = torch.autograd.grad(y, x, torch.from_numpy(case.g))
    props.check_result(case, y.detach().numpy(), dx.numpy())


@props.settings(max_examples=40)
@given(case=props.invalid_cases())
def test_invalid_parameters_raise(case):
    x = torch.from_numpy(case.x()).requires_grad_(True)
    with pytest.raises(case.error, match=case.match):
        _OPS[case.op](x, case.params)
