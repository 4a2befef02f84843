"""custom_gradient: several inputs, pass-through arguments, errors, double backward."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip.torch import check_gradient, custom_gradient  # noqa: E402


@custom_gradient
def cube(x):
    return x**3, lambda g: g * x  # deliberately not the derivative 3x²g


@custom_gradient
def scaled_mul(x, k, w, *, bias=0.0):
    # forward x * w * k + bias; backward swaps the roles and drops k on purpose
    return x * w * k + bias, lambda g: (g * w, None, g * x * 2)


def test_single_input_rule_in_effect():
    report = check_gradient(
        cube,
        torch.randn(5),
        lambda x, output, grad_output: grad_output * x,
        default_fn=lambda x: x**3,
    )
    assert report.ok and report.differs_from_default


def test_several_inputs_and_non_tensor_arguments():
    k = 3.0
    report = check_gradient(
        lambda x, w: scaled_mul(x, k, w, bias=1.0),
        (torch.randn(4), torch.randn(4)),
        lambda x, w, output, grad_output: (grad_output * w, grad_output * x * 2),
        default_fn=lambda x, w: x * w * k + 1.0,
    )
    assert report.ok and report.differs_from_default
    x, w = torch.ones(2, requires_grad=True), torch.full((2,), 2.0, requires_grad=True)
    y = scaled_mul(x, k, w, bias=1.0)
    assert torch.equal(y, torch.full((2,), 7.0))
    y.sum().backward()
    assert torch.equal(x.grad, w.detach()) and torch.equal(w.grad, 2 * x.detach())


def test_none_gradient_is_allowed():
    @custom_gradient
    def first(x, w):
        return x + w, lambda g: (g, None)

    x, w = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    first(x, w).sum().backward()
    assert torch.equal(x.grad, torch.ones(2)) and w.grad is None


def test_returning_the_input_is_a_fresh_view():
    @custom_gradient
    def ident(x):
        return x, lambda g: -g

    x = torch.ones(3, requires_grad=True)
    ident(x).sum().backward()
    assert torch.equal(x.grad, -torch.ones(3))


def test_double_backward_through_grad_fn():
    x = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad((cube(x) ** 2).sum(), x, create_graph=True)
    assert torch.allclose(g1, 2 * x**3 * x)  # g = 2y = 2x³, grad_fn: g * x
    (g2,) = torch.autograd.grad(g1.sum(), x)
    # g1 = 2 * cube(x) * x: d/dx = 2 * (cube's own rule: x) * x + 2 * x³
    assert torch.allclose(g2, 2 * x.detach() ** 2 + 2 * x.detach() ** 3)


def test_wrong_number_of_gradients():
    @custom_gradient
    def bad(x, w):
        return x * w, lambda g: g

    x, w = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    with pytest.raises(BackflipTypeError, match=r"bad returned 1 gradient\(s\); expected 2"):
        bad(x, w).sum().backward()


def test_wrong_shape_of_gradient():
    @custom_gradient
    def bad(x):
        return x.sum(), lambda g: g

    x = torch.ones(3, requires_grad=True)
    with pytest.raises(BackflipValueError, match=r"gradient 0 .* of shape \(\); expected \(3,\)"):
        bad(x).backward()


def test_must_return_output_and_grad_fn():
    @custom_gradient
    def bad(x):
        return x * 2

    with pytest.raises(BackflipTypeError, match=r"bad decorated by custom_gradient must return \(output, grad_fn\); got Tensor"):
        bad(torch.ones(2, requires_grad=True))

    @custom_gradient
    def bad_out(x):
        return [x], lambda g: g

    with pytest.raises(BackflipTypeError, match=r"must be one torch.Tensor; got list"):
        bad_out(torch.ones(2, requires_grad=True))


def test_torch_func_grad_and_vmap():
    x, w = torch.randn(3, 4), torch.randn(3, 4)
    gx = torch.func.grad(lambda t: scaled_mul(t, 3.0, w, bias=1.0).sum())(x)
    assert torch.allclose(gx, w)  # the rule, not the true derivative 3w
    per_sample = torch.func.vmap(torch.func.grad(lambda t, v: (cube(t) * v).sum()))(x, w)
    assert torch.allclose(per_sample, w * x)
    gw = torch.func.vmap(torch.func.grad(lambda v, t: scaled_mul(t, 3.0, v).sum()))(w, x)
    assert torch.allclose(gw, 2 * x)
