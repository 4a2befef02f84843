"""override_gradients: coverage, counts, strict errors, restoration, in-place, compile."""

from __future__ import annotations

import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

import backflip  # noqa: E402
import backflip.torch._override as override_mod  # noqa: E402
from backflip._errors import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip.conformance import user_rule  # noqa: E402
from backflip.torch import GradientCheckError  # noqa: E402
from backflip.torch._override import override_gradients  # noqa: E402

# the rule a lying override applies instead of each (user_rule: dL/dx = g * y)
LIES = {"vanilla": "guided", "guided": "deconvnet", "deconvnet": "vanilla", user_rule: "vanilla"}

nn = torch.nn
F = torch.nn.functional


def input_grad(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(out[torch.arange(len(target)), target].sum(), x)
    return g


def snapshot(model):
    return [
        (
            id(m),
            dict(m._forward_hooks),
            dict(m._forward_pre_hooks),
            dict(m._backward_hooks),
            getattr(m, "inplace", None),
            "forward" in m.__dict__,
        )
        for m in model.modules()
    ]


@pytest.mark.parametrize("name", ["mlp", "cnn", "mixed"])
@pytest.mark.parametrize("rule", ["guided", "deconvnet", "vanilla"])
def test_rule_equals_hand_computed(models, helpers, seeded, name, rule):
    factory, parts, shape = models[name]
    model = factory()
    x, target = torch.randn(shape), torch.tensor([0, 1, 2, 1])
    default = input_grad(model, x, target)
    with override_gradients(model, rule) as report:
        got = input_grad(model, x, target)
    expected = helpers.hand_rule(parts(model), x, target, rule)
    torch.testing.assert_close(got, expected)
    if rule == "vanilla":
        torch.testing.assert_close(got, default)
    else:
        assert not torch.allclose(got, default), "the rule must change the gradient here"
    assert report.complete and report.seen == report.overridden == len(parts(model)) - 1


def test_mixed_model_fully_covered_with_sites(helpers):
    model = helpers.MixedNet()
    with override_gradients(model, "guided") as report:
        model(torch.randn(2, 6)).sum().backward()
        model(torch.randn(2, 6))
    assert (report.seen, report.overridden, report.forwards) == (8, 8, 2)
    assert report.not_overridden == []
    assert report.sites["module 'act' (ReLU)"] == 2
    labels = sorted(s.split(" in ")[0] for s in report.sites if " in " in s)
    assert labels == ["F.relu", "relu", "relu"]
    assert all("MixedNet.forward of '<model>' at _testing.py:" in s for s in report.sites
               if " in " in s)  # fmt: skip
    assert report.activations == {("relu", ()): 8}
    assert "8/8 nonlinearity calls overridden in 2 forward pass(es)" in str(report)


def test_other_activations_modules_and_functional():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.acts = nn.ModuleList(
                [nn.LeakyReLU(0.2), nn.ELU(0.5), nn.GELU("tanh"), nn.SiLU(), nn.Softplus(2.0)]
            )

        def forward(self, x):
            for act in self.acts:
                x = act(self.fc(x))
            return F.softplus(F.gelu(F.silu(F.elu(F.leaky_relu(x, 0.1)))), beta=3.0)

    model = Net()
    with override_gradients(model, "guided") as report:
        model(torch.randn(3, 4)).sum().backward()
    assert report.complete and report.seen == 10
    assert report.activations[("leaky_relu", (("negative_slope", 0.2),))] == 1
    assert report.activations[("gelu", (("approximate", "tanh"),))] == 1
    assert report.activations[("softplus", (("beta", 2.0), ("threshold", 20.0)))] == 1
    assert report.activations[("softplus", (("beta", 3.0),))] == 1
    report.verify()


def test_forward_values_unchanged(models, seeded):
    for factory, _parts, shape in models.values():
        model, x = factory(), torch.randn(shape)
        with torch.no_grad():
            before = model(x.clone())
            with override_gradients(model, "guided"):
                during = model(x.clone())
        torch.testing.assert_close(during, before)


@pytest.mark.parametrize("how", ["module", "functional", "method"])
def test_inplace_relu(how):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 2)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            h = self.fc1(x)
            if how == "module":
                h = self.act(h)
            elif how == "functional":
                h = F.relu(h, inplace=True)
            else:
                h.relu_()
            return self.fc2(h)

    torch.manual_seed(1)
    model, x, t = Net(), torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    with override_gradients(model, "guided") as report:
        got = input_grad(model, x, t)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.fc2(torch.relu(model.fc1(x))))
    expected_g = (
        torch.nn.functional.one_hot(t, 2).float() @ model.fc2.weight
    )  # upstream at the ReLU output
    h = model.fc1(x).detach()
    expected = (expected_g * (h > 0) * (expected_g > 0)) @ model.fc1.weight
    torch.testing.assert_close(got, expected.detach())
    assert report.complete and model.act.inplace is True


def test_restores_everything(helpers, seeded):
    model = helpers.MixedNet()
    x, t = torch.randn(3, 6), torch.tensor([0, 1, 2])
    before_grad, before = input_grad(model, x, t), snapshot(model)
    forward_before = model.forward
    with override_gradients(model, "guided"):
        assert torch._C._len_torch_function_stack() == 0  # the mode is on only inside forward
        assert "forward" in model.__dict__
        guided = input_grad(model, x, t)
    assert snapshot(model) == before
    assert model.forward == forward_before
    assert torch._C._len_torch_function_stack() == 0
    after = input_grad(model, x, t)
    torch.testing.assert_close(after, before_grad)
    assert not torch.allclose(guided, before_grad)


def test_restores_after_error_in_block_and_in_forward(helpers, seeded):
    model = helpers.MixedNet()
    x, t = torch.randn(3, 6), torch.tensor([0, 1, 2])
    before_grad, before = input_grad(model, x, t), snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), override_gradients(model, "guided"):
        input_grad(model, x, t)
        raise RuntimeError("boom")
    assert snapshot(model) == before
    with pytest.raises(RuntimeError), override_gradients(model, "guided"):
        model(torch.randn(3, 7))  # shape error inside the forward, under the mode
    assert snapshot(model) == before and torch._C._len_torch_function_stack() == 0
    torch.testing.assert_close(input_grad(model, x, t), before_grad)


def test_keeps_an_instance_forward():
    model = nn.Linear(2, 2)
    own = model.forward
    model.forward = own  # an instance attribute set by the user
    with override_gradients(model, "guided"):
        model(torch.ones(1, 2))
    assert model.__dict__["forward"] is own


def test_strict_raises_naming_module_and_call_site():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.Tanh())
    with (
        pytest.raises(
            BackflipValueError,
            match=r"cannot apply the rule 'guided' to module '3' \(Tanh\): no gradient rule "
            r"covers torch\.tanh.*strict=False",
        ),
        override_gradients(model, "guided"),
    ):
        model(torch.ones(1, 2))

    class Net(nn.Module):
        def forward(self, x):
            return torch.sigmoid(F.relu(x))

    net = Net()
    with (
        pytest.raises(
            BackflipValueError,
            match=r"torch\.sigmoid in Net\.forward of '<model>' at test_override",
        ),
        override_gradients(net, "deconvnet"),
    ):
        Net()(torch.ones(1))  # another instance: not watched, no error
        net(torch.ones(1))


def test_non_strict_lists_what_it_left():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.Hardswish())
    x = torch.randn(2, 3)
    with override_gradients(model, "guided", strict=False) as report:
        model(x)
    assert (report.seen, report.overridden, report.complete) == (2, 1, False)
    assert report.not_overridden == ["module '3' (Hardswish)"]
    assert "NOT overridden: module '3' (Hardswish)" in str(report)


def test_calls_outside_the_forward_are_untouched():
    model = nn.Sequential(nn.Linear(2, 2))
    x = torch.tensor([[1.0, -1.0]], requires_grad=True)
    with override_gradients(model, "deconvnet") as report:
        torch.relu(model(x)).sum().backward()  # relu in user code, outside the model
    assert report.seen == 0 and not report.complete


def test_verify():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with override_gradients(model, "guided") as report:
        with pytest.raises(BackflipValueError, match="saw no nonlinearity call"):
            report.verify()
        model(torch.ones(1, 2))
    report.verify()
    report.verify(lambda x, y, g: 2 * g)


@pytest.mark.parametrize("rule", list(LIES))
def test_verify_catches_an_override_that_applies_another_rule(monkeypatch, rule):
    real, lie = override_mod.activation_with_rule, LIES[rule]  # counted, the wrong backward
    monkeypatch.setattr(
        override_mod, "activation_with_rule", lambda x, act, _, **p: real(x, act, lie, **p)
    )
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with override_gradients(model, rule) as report:
        model(torch.ones(1, 2))
    assert report.complete  # the counts alone cannot tell
    name = getattr(rule, "__name__", rule)
    with pytest.raises(
        backflip.OverrideCheckError,
        match=rf"^report\.verify\(\): relu at module '1' \(ReLU\) does not follow the rule "
        rf"'{name}': PyTorch's dL/dx differs from the NumPy reference by up to [\d.e+-]+ \(at x=",
    ) as info:
        report.verify()
    # still a GradientCheckError, as before backflip.OverrideCheckError existed
    assert isinstance(info.value, GradientCheckError)
    assert (info.value.report.ok, info.value.report.failed_check) == (False, "expected")


def test_verify_follows_pytorchs_softplus_threshold_and_tanh_gelu():
    model = nn.Sequential(nn.Softplus(beta=2.0, threshold=1.0), nn.GELU("tanh"))
    with override_gradients(model, "guided") as report:
        model(torch.ones(1, 2))
    report.verify()  # linear softplus where beta * x > 1, the tanh GELU's own derivative
    report.verify(user_rule)
    report.verify("vanilla")


def test_argument_errors():
    with pytest.raises(BackflipTypeError, match=r"expects a torch\.nn\.Module; got function"):
        with override_gradients(lambda x: x, "guided"):
            pass
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidedd'"):
        with override_gradients(nn.ReLU(), "guidedd"):
            pass


def test_torch_compile_gives_the_rule_not_the_default(helpers, seeded):
    model = helpers.FunctionalCNN()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    default = input_grad(model, x, t)
    expected = helpers.hand_rule(model.linear_parts(), x, t, "guided")
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(input_grad(compiled, x, t), default)  # compiled once, default
    for target in (compiled, model):  # compiled module, or the plain one inside the block
        with override_gradients(target, "guided") as report:
            got = input_grad(compiled, x, t)
        torch.testing.assert_close(got, expected)
        assert report.complete
    torch.testing.assert_close(input_grad(compiled, x, t), default)  # and back afterwards


def test_compiled_activation_with_rule():
    from backflip.torch import guided_relu

    fn = torch.compile(lambda x: guided_relu(x * 2.0), backend="aot_eager")
    x = torch.tensor([1.0, 1.0, -1.0], requires_grad=True)
    fn(x).backward(torch.tensor([2.0, -2.0, 2.0]))
    assert x.grad.tolist() == [4.0, 0.0, 0.0]


def test_compile_tracing_the_mode_raises(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(BackflipValueError, match=r"traced by torch\.compile"):
        with override_gradients(model, "guided"):
            model(torch.ones(1))


@pytest.mark.parametrize(
    "inplace_call",
    [
        lambda h: F.elu(h, 0.5, True),
        lambda h: F.leaky_relu(h, 0.2, inplace=True),
        lambda h: F.leaky_relu_(h, 0.2),
        lambda h: F.elu_(h, 0.5),
        lambda h: F.silu(h, inplace=True),
        lambda h: torch.relu_(h),
    ],
    ids=["elu", "leaky_relu", "leaky_relu_", "elu_", "silu", "torch.relu_"],
)
def test_inplace_other_activations_match_out_of_place(inplace_call):
    torch.manual_seed(2)
    fc1, fc2 = nn.Linear(4, 5), nn.Linear(5, 2)

    class Net(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.fc1, self.fc2, self.act = fc1, fc2, act

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    x, t = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        h = fc1(x)
        out_of_place = inplace_call(h.clone())
    net = Net(inplace_call)
    with override_gradients(net, "guided") as report:
        got = input_grad(net, x, t)
        with torch.no_grad():
            torch.testing.assert_close(net(x), fc2(out_of_place))
    ((activation, params),) = report.activations
    from backflip.torch import activation_with_rule

    class Ref(nn.Module):
        def forward(self, x):
            return fc2(activation_with_rule(fc1(x), activation, "guided", **dict(params)))

    torch.testing.assert_close(got, input_grad(Ref(), x, t))
    assert report.complete and report.seen == 2  # two forward passes
    report.verify()


def test_nesting():
    torch.manual_seed(3)
    inner = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), inner, nn.Linear(3, 2))
    with (
        override_gradients(model, "guided"),
        pytest.raises(
            BackflipValueError, match="already active on this Sequential; one rule per model"
        ),
        override_gradients(model, "deconvnet"),
    ):
        pass
    # an override on a submodule inside one on the whole model: the inner rule wins there,
    # and each report counts only the calls it overrode
    with override_gradients(model, "guided") as outer, override_gradients(inner, "deconvnet") as r:
        model(torch.randn(2, 3))
    assert (outer.seen, outer.overridden, r.seen, r.overridden) == (1, 1, 1, 1)
    assert list(outer.sites) == ["module '1' (ReLU)"] and list(r.sites) == ["module '1' (ReLU)"]
    assert "forward" not in model.__dict__ and "forward" not in inner.__dict__


def test_inplace_relu_with_user_rule_sees_the_original_input():
    seen = {}

    def rule(x, y, g):
        seen["x"] = x.clone()
        return g * 2

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True))
    x = torch.randn(3, 2, requires_grad=True)
    with override_gradients(model, rule) as report:
        model(x).sum().backward()
    with torch.no_grad():
        pre = model[0](x)
    torch.testing.assert_close(seen["x"], pre)  # not the ReLU output written over it
    torch.testing.assert_close(x.grad, (2 * torch.ones(3, 2)) @ model[0].weight)
    assert report.rule == "rule" and report.complete
