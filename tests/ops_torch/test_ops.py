"""The four identity-forward ops, eager: rules, views, errors, dtypes, autocast, func, double."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip.torch import (  # noqa: E402
    check_gradient,
    clip_gradient,
    clip_gradient_norm,
    reverse_gradient,
    scale_gradient,
)

IDENTITY = lambda x: x  # noqa: E731 - the default backward of every op here

# (op, expected rule (x, output, grad_output) -> dL/dx)
OPS = {
    "reverse": (
        lambda x: reverse_gradient(x, 0.7),
        lambda x, output, grad_output: -0.7 * grad_output,
    ),
    "reverse-tensor": (
        lambda x: reverse_gradient(x, torch.tensor(2.0)),
        lambda x, output, grad_output: -2.0 * grad_output,
    ),
    "scale": (lambda x: scale_gradient(x, -3.0), lambda x, output, grad_output: -3.0 * grad_output),
    "clip": (
        lambda x: clip_gradient(x, -0.2, 0.5),
        lambda x, output, grad_output: grad_output.clamp(-0.2, 0.5),
    ),
    "clip-min-only": (
        lambda x: clip_gradient(x, min=-0.1),
        lambda x, output, grad_output: grad_output.clamp(min=-0.1),
    ),
    "clip_norm": (
        lambda x: clip_gradient_norm(x, 0.5),
        lambda x, output, grad_output: grad_output * 0.5 / grad_output.norm(),
    ),
}


@pytest.mark.parametrize("name", list(OPS))
def test_rule_in_effect(name):
    fn, rule = OPS[name]
    report = check_gradient(fn, torch.randn(4, 5), rule, default_fn=IDENTITY)
    assert report.ok and report.differs_from_default and report.max_abs_error < 1e-5


@pytest.mark.parametrize("name", list(OPS))
def test_forward_is_a_view_and_saves_nothing(name, saved_bytes):
    fn, _ = OPS[name]
    x = torch.randn(8, 3, requires_grad=True)
    nbytes, y = saved_bytes(lambda: fn(x))
    assert nbytes == 0
    assert y._base is x and y.data_ptr() == x.data_ptr()
    assert torch.equal(y, x)


def test_seed_example_grl_negates_first_layer_only():
    torch.manual_seed(0)
    from backflip.torch import GradientReversal

    net1, net2, net3 = (torch.nn.Linear(4, 4) for _ in range(3))
    x, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])

    def grads(grl):
        for p in (*net1.parameters(), *net2.parameters(), *net3.parameters()):
            p.grad = None
        h = net1(x)
        h = grl(h) if grl is not None else h
        torch.nn.functional.cross_entropy(net3(net2(h)), target).backward()
        return [n.weight.grad.clone() for n in (net1, net2, net3)]

    plain, reversed_ = grads(None), grads(GradientReversal())
    assert torch.equal(reversed_[0], -plain[0])
    assert torch.equal(reversed_[1], plain[1]) and torch.equal(reversed_[2], plain[2])
    assert plain[0].abs().sum() > 0


def test_seed_example_clip_and_scale():
    x = torch.tensor(5.0, requires_grad=True)
    clip_gradient(x, -0.1, 0.1).backward()
    assert x.grad.item() == pytest.approx(0.1)
    x = torch.tensor(3.0, requires_grad=True)
    ((6 * x) ** 2).backward()
    assert x.grad.item() == 216.0
    x.grad = None
    scale_gradient((6 * x) ** 2, 0.5).backward()
    assert x.grad.item() == 108.0


@pytest.mark.parametrize("lambd", [0.5, 2.0])
def test_double_backward_picks_up_lambd_squared(lambd):
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad((reverse_gradient(x, lambd) ** 3).sum(), x, create_graph=True)
    assert torch.allclose(g1, -3 * lambd * x**2)
    (g2,) = torch.autograd.grad(g1.sum(), x)
    assert torch.allclose(g2, 6 * lambd**2 * x.detach())


def test_double_backward_of_scale_and_clip():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad((scale_gradient(x, 3.0) ** 2).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x)
    assert torch.allclose(g2, torch.full_like(x, 2 * 9.0))  # factor applied in each pass
    (g1,) = torch.autograd.grad((clip_gradient(x, -1, 1) ** 2).sum(), x, create_graph=True)
    assert torch.equal(g1.detach(), torch.tensor([1.0, 1.0], dtype=torch.float64))
    (g2,) = torch.autograd.grad(g1.sum(), x)  # 2x > 1 everywhere: the clamp is flat
    assert torch.equal(g2, torch.zeros_like(x))


@pytest.mark.parametrize("name", list(OPS))
def test_torch_func_grad_and_vmap(name):
    fn, rule = OPS[name]
    x = torch.randn(3, 4)
    w = torch.randn(3, 4)
    g = torch.func.grad(lambda t: (fn(t) * w).sum())(x)
    assert torch.allclose(g, rule(x, output=x, grad_output=w), atol=1e-6)
    per_sample = torch.func.vmap(torch.func.grad(lambda t, v: (fn(t) * v).sum()))(x, w)
    want = torch.stack([rule(x[i], output=x[i], grad_output=w[i]) for i in range(3)])
    assert torch.allclose(per_sample, want, atol=1e-6)  # clip_norm: norm per sample


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(OPS))
def test_dtypes(name, dtype):
    fn, rule = OPS[name]
    x = torch.randn(4, 5).to(dtype)
    report = check_gradient(fn, x, rule, default_fn=IDENTITY, atol=2e-2, rtol=2e-2)
    assert report.ok
    x.requires_grad_(True)
    y = fn(x)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype


def test_autocast_bfloat16_keeps_dtypes():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        out = reverse_gradient(h, torch.tensor(0.5))  # float32 lambd must not upcast
        assert out.dtype == torch.bfloat16
        loss = clip_gradient_norm(scale_gradient(out, 2.0), 10.0).float().sum()
    loss.backward()
    assert x.grad.dtype == torch.float32 and lin.weight.grad.dtype == torch.float32
    want = -0.5 * 2.0 * lin.weight.detach().sum(0)
    assert torch.allclose(x.grad, want.expand_as(x), atol=1e-2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: reverse_gradient(x, float("nan")), r"`lambd` of reverse_gradient .* got nan"),
        (lambda x: reverse_gradient(x, float("inf")), r"finite and >= 0; got inf"),
        (lambda x: reverse_gradient(x, -1.0), r"got -1.0. Pass a float"),
        (lambda x: reverse_gradient(x, torch.tensor(-0.5)), r"got -0.5"),
        (lambda x: scale_gradient(x, float("inf")), r"`factor` of scale_gradient must be finite"),
        (lambda x: clip_gradient(x), r"needs at least one of `min` and `max`"),
        (lambda x: clip_gradient(x, 1.0, -1.0), r"must be <= `max`; got min=1.0, max=-1.0"),
        (lambda x: clip_gradient_norm(x, 0.0), r"`max_norm` of clip_gradient_norm .* got 0.0"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(BackflipValueError, match=match):
        call(torch.ones(2))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.ones(2, dtype=torch.int64), r"got dtype torch.int64, which carries no gradient"),
        (torch.ones(2, dtype=torch.bool), r"got dtype torch.bool"),
        ([1.0, 2.0], r"expects a torch.Tensor; got list"),
    ],
)
def test_type_errors(x, match):
    with pytest.raises(BackflipTypeError, match=match):
        reverse_gradient(x)


def test_lambd_type_errors():
    with pytest.raises(BackflipTypeError, match=r"a 0-d tensor; got a tensor of shape \(2,\)"):
        reverse_gradient(torch.ones(2), torch.ones(2))
    with pytest.raises(BackflipTypeError, match=r"`lambd` of reverse_gradient must be a real"):
        reverse_gradient(torch.ones(2), "0.5")
