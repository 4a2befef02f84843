"""torch.compile(fullgraph=True): no graph breaks, right gradients, no recompile when λ changes."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402

from backflip.schedules import dann_lambda  # noqa: E402
from backflip.torch import (  # noqa: E402
    GradientReversal,
    clip_gradient,
    clip_gradient_norm,
    custom_gradient,
    reverse_gradient,
    scale_gradient,
)

W = torch.tensor([1.0, -2.0, 3.0])


def _grad(f, *args):
    x = torch.tensor([0.5, 1.0, -1.5], requires_grad=True)
    (f(x, *args) * W).sum().backward()
    return x.grad


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    ("op", "rule"),
    [
        (reverse_gradient, lambda v: -v * W),
        (scale_gradient, lambda v: v * W),
    ],
    ids=["reverse", "scale"],
)
def test_tensor_parameter_changes_without_recompile(op, rule):
    assert torch._dynamo.explain(op)(torch.ones(3), torch.tensor(0.5)).graph_break_count == 0
    cnt = CompileCounterWithBackend("aot_eager")
    f = torch.compile(op, backend=cnt, fullgraph=True)
    value = torch.tensor(1.0)
    for v in (1.0, 0.25, 3.0):
        value.fill_(v)
        assert torch.allclose(_grad(f, value), rule(v))
    assert cnt.frame_count == 1


@pytest.mark.parametrize(
    ("op", "want"),
    [
        (lambda x: clip_gradient(x, -1.5, 2.0), W.clamp(-1.5, 2.0)),
        (lambda x: clip_gradient_norm(x, 1.0), W / W.norm()),
    ],
    ids=["clip", "clip_norm"],
)
def test_clip_ops_compile_without_breaks(op, want):
    assert torch._dynamo.explain(op)(torch.ones(3)).graph_break_count == 0
    cnt = CompileCounterWithBackend("aot_eager")
    f = torch.compile(op, backend=cnt, fullgraph=True)
    for _ in range(2):
        assert torch.allclose(_grad(f), want)
    assert cnt.frame_count == 1


def test_custom_gradient_compiles():
    @custom_gradient
    def cube(x):
        return x**3, lambda g: g * x

    cnt = CompileCounterWithBackend("aot_eager")
    f = torch.compile(cube, backend=cnt, fullgraph=True)
    x = torch.tensor([0.5, 1.0, -1.5])
    assert torch.allclose(_grad(f), W * x)
    assert cnt.frame_count == 1


@pytest.mark.slow
def test_module_inductor_schedule_no_recompile():
    """The default (inductor) backend: set_progress between steps reuses the one graph."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), GradientReversal(schedule=dann_lambda))
    cnt = CompileCounterWithBackend("inductor")
    f = torch.compile(model, backend=cnt, fullgraph=True)
    eager_w = model[0].weight.detach().clone()
    for p in (0.1, 0.5, 1.0):
        model[1].set_progress(p)
        model.zero_grad()
        x = torch.ones(2, 3)
        f(x).sum().backward()
        want = -dann_lambda(p) * torch.full((3, 3), 2.0)
        assert torch.allclose(model[0].weight.grad, want, atol=1e-6)
    assert cnt.frame_count == 1
    assert torch.equal(model[0].weight.detach(), eager_w)


def test_python_float_lambd_is_a_constant():
    """Documented: a float is a constant at first; a second value recompiles once (dynamic)."""
    cnt = CompileCounterWithBackend("aot_eager")
    f = torch.compile(reverse_gradient, backend=cnt, fullgraph=True)
    assert torch.allclose(_grad(f, 0.5), -0.5 * W)
    assert torch.allclose(_grad(f, 2.0), -2.0 * W)
    assert torch.allclose(_grad(f, 3.0), -3.0 * W)
    assert cnt.frame_count == 2


def test_bad_float_lambd_is_caught_while_compiling():
    """Under fullgraph, dynamo reports our error (its own exception type wraps it)."""
    f = torch.compile(reverse_gradient, backend="aot_eager", fullgraph=True)
    assert torch.allclose(_grad(f, 0.5), -0.5 * W)
    assert torch.allclose(_grad(f, 2.0), -2.0 * W)  # now a symbolic float
    for bad in (-1.0, float("nan")):
        with pytest.raises(Exception, match=r"reverse_gradient got an invalid value while compil"):
            _grad(f, bad)


def test_compiled_reversal_with_a_tensor_lambd_saves_nothing(saved_bytes):
    """λ is negated in the backward: the compiled forward computes and saves nothing for it."""
    f = torch.compile(reverse_gradient, backend="aot_eager", fullgraph=True)
    x, lambd = torch.randn(8, 3, requires_grad=True), torch.tensor(0.5)
    nbytes, y = saved_bytes(lambda: f(x, lambd))
    assert nbytes == 0
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.full_like(x, -0.5))
