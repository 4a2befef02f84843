"""The custom_gradient contract (docs/guides/custom-gradients.md): what is PyTorch's own.

The contract itself (keyword arguments, the gradient count, callables without
``__name__``, the compiler) is tested once for every adapter in
tests/conformance/test_custom_contract.py. Here: torch.compile's graphs are reused, the
error without fullgraph, and the frameworks' own documented custom-gradient examples with
their figures (the same four in every adapter's file).
"""

from __future__ import annotations

import functools
import math

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402

from backflip import BackflipTypeError  # noqa: E402
from backflip.torch import custom_gradient  # noqa: E402


def _grads(f, *args):
    """The gradients of ``f(*args).sum()`` w.r.t. every tensor argument."""
    args = [a.clone().requires_grad_(True) for a in args]
    return torch.autograd.grad(f(*args).sum(), args, allow_unused=True)


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


scaled = custom_gradient(_scaled)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# --- the compiler ---------------------------------------------------------------------


def test_torch_compile_fullgraph_reuses_its_graphs():
    """Keywords, a partial and a callable object in one fullgraph: two graphs, both reused."""
    part = custom_gradient(functools.partial(_scaled, power=2))

    class Twice:
        def __call__(self, x, *, k):
            return x * k, lambda g: 2 * g

    twice = custom_gradient(Twice())

    def f(x, bias):
        return scaled(x, 3.0, bias=bias) + part(x, 1.0, bias=bias) + twice(x, k=5.0)

    cnt = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(f, backend=cnt, fullgraph=True)
    x, bias = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5])
    for _ in range(2):
        assert torch.allclose(compiled(x, bias), f(x, bias))
        gx, gbias = _grads(compiled, x, bias)
        assert torch.equal(gx, torch.full((2,), 22.0)) and gbias is None
    assert cnt.frame_count == 2  # one graph without gradients, one with; both reused


def test_wrong_count_under_torch_compile_without_fullgraph_is_the_backflip_error():
    """AOT autograd traces the backward when compiling, so the count is checked then.

    Without fullgraph Dynamo falls back to eager and the BackflipTypeError itself comes
    out (with fullgraph=True, tests/conformance/test_custom_contract.py: Dynamo may wrap it
    in its own error, whose text carries ours).
    """

    @custom_gradient
    def two(x, c):
        return x * c, lambda g: g

    message = r"two returned 1 gradient\(s\); expected 2, one per positional argument"
    with pytest.raises(BackflipTypeError, match=message):
        _grads(torch.compile(lambda x: two(x, 3.0), backend="aot_eager"), torch.ones(2))


# --- the frameworks' documented examples ----------------------------------------------


def test_pytorch_mulconstant_example():
    """PyTorch, "Extending PyTorch": MulConstant, ``y = x * c``; backward ``(g * c, None)``."""

    @custom_gradient
    def mul_constant(tensor, constant):
        return tensor * constant, lambda grad_output: (grad_output * constant, None)

    x = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(mul_constant(x, 2.5), torch.tensor([2.5, 5.0, 7.5]))
    (gx,) = _grads(lambda t: mul_constant(t, 2.5), x)
    assert torch.equal(gx, torch.full((3,), 2.5))


def test_jax_clip_gradient_example():
    """JAX custom_vjp tutorial: ``clip_gradient(lo, hi, x)`` under ``vmap(grad(clip_sin))``.

    The tutorial plots sin(t) and the gradient of clip_sin over t = linspace(0, 10, 1000):
    cos(t) clipped to [-0.75, 0.75].
    """

    @custom_gradient
    def clip_gradient(lo, hi, x):
        return x, lambda g: (None, None, torch.clamp(g, lo, hi))

    def clip_sin(x):
        return torch.sin(clip_gradient(-0.75, 0.75, x))

    t = torch.linspace(0, 10, 1000)
    assert torch.allclose(clip_sin(t), torch.sin(t))
    grad = torch.func.vmap(torch.func.grad(clip_sin))(t)
    assert torch.allclose(grad, torch.clamp(torch.cos(t), -0.75, 0.75))
    assert (grad.max().item(), grad.min().item()) == (0.75, -0.75)
    assert torch.cos(t).max().item() == 1.0  # the unclipped gradient reaches 1


def test_tensorflow_log1pexp_example():
    """TensorFlow's tf.custom_gradient docs: at x = 100 the stable gradient is 1.0, the naive one NaN."""

    @custom_gradient
    def log1pexp(x):
        e = torch.exp(x)
        return torch.log(1 + e), lambda upstream: upstream * (1 - 1 / (1 + e))

    x = torch.tensor(100.0)
    (stable,) = _grads(log1pexp, x)
    (naive,) = _grads(lambda v: torch.log(1 + torch.exp(v)), x)
    assert stable.item() == 1.0 and math.isnan(naive.item())


def test_pytensor_opfromgraph_rescale_dy_example():
    """PyTensor's OpFromGraph docs: ``e = x + y * z`` with dy overridden to ``z * 2``;
    ``fn(2., 3., 4.)`` gives ``[1., 8., 3.]``."""

    @custom_gradient
    def e(x, y, z):
        return x + y * z, lambda g: (g, z * 2, g * y)

    grads = _grads(e, torch.tensor(2.0), torch.tensor(3.0), torch.tensor(4.0))
    assert [g.item() for g in grads] == [1.0, 8.0, 3.0]
