"""backflip.pytensor.override_gradients: rewriting a built graph, compiled, with its report."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from backflip._testing import require_backend

pytensor = require_backend("pytensor")
import pytensor.tensor as pt  # noqa: E402
from pytensor.compile.builders import OpFromGraph  # noqa: E402
from pytensor.gradient import jacobian  # noqa: E402

import backflip  # noqa: E402
import backflip.pytensor as bfp  # noqa: E402
import backflip.pytensor._override as override_mod  # noqa: E402
from backflip._errors import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip._override_report import OverrideReport  # noqa: E402
from backflip.conformance import user_rule  # noqa: E402
from backflip.pytensor import override_gradients  # noqa: E402

# the rule a lying override applies instead of each (user_rule: dL/dx = g * y)
LIES = {"vanilla": "guided", "guided": "deconvnet", "deconvnet": "vanilla", user_rule: "vanilla"}

FAST = "FAST_COMPILE"  # the graph is under test; one test compiles in the default mode
RNG = np.random.default_rng(0)
W1, B1 = RNG.standard_normal((5, 7)), RNG.standard_normal(7)
W2, B2 = RNG.standard_normal((7, 6)), RNG.standard_normal(6)
W3, B3 = RNG.standard_normal((6, 3)), RNG.standard_normal(3)
X = RNG.standard_normal((4, 5))
COT = RNG.standard_normal((4, 3))  # mixed signs: the rules differ
_SOURCE = Path(__file__).read_text().splitlines()


def _line(text: str) -> int:
    """The line of this file that holds ``text`` (other than a ``_line`` call)."""
    return next(i for i, line in enumerate(_SOURCE, 1) if text in line and "_line(" not in line)


def rectify(x):
    return 0.5 * (x + abs(x))  # Theano's nnet.relu(x), so Lasagne's rectify


RELUS = {
    "maximum": lambda h: pt.maximum(h, 0),
    "maximum_0_x": lambda h: pt.maximum(0.0, h),
    "maximum_zeros_like": lambda h: pt.maximum(h, pt.zeros_like(h)),
    "switch": lambda h: pt.switch(h > 0, h, 0),
    "switch_lt": lambda h: pt.switch(pt.lt(0, h), h, 0.0),
    "theano": rectify,
    "theano_alpha_0": lambda h: 0.5 * h + 0.5 * abs(h),
}


def mlp(x, act):
    """A Lasagne-style 3-layer MLP built with plain PyTensor ops."""
    h = act(x @ W1 + B1)
    h = act(h @ W2 + B2)
    return h @ W3 + B3


def hand_rule(rule):
    """dL/dx through the MLP with the rule at each ReLU, by hand (NumPy)."""
    pre1 = X @ W1 + B1
    pre2 = np.maximum(pre1, 0) @ W2 + B2
    g = COT @ W3.T
    for pre, w in ((pre2, W2), (pre1, W1)):
        if rule == "vanilla":
            g = g * (pre > 0)
        elif rule == "guided":
            g = g * (pre > 0) * (g > 0)
        else:
            g = g * (g > 0)
        g = g @ w.T
    return g


@pytest.mark.parametrize("rule", ["guided", "deconvnet", "vanilla"])
@pytest.mark.parametrize("name", list(RELUS))
def test_each_relu_spelling_gets_the_rule(name, rule):
    x = pt.matrix("x")
    loss = (mlp(x, RELUS[name]) * COT).sum()
    new, report = override_gradients(loss, rule)
    fn = pytensor.function([x], [loss, new, pt.grad(loss, x), pt.grad(new, x)], mode=FAST)
    before, after, default, got = fn(X)
    assert after == pytest.approx(before, rel=1e-12)
    np.testing.assert_allclose(got, hand_rule(rule), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(default, hand_rule("vanilla"), rtol=1e-10)  # the original graph
    if rule != "vanilla":
        assert not np.allclose(got, default)
    assert report.complete and (report.seen, report.overridden, report.forwards) == (2, 2, 1)
    assert report.activations == {("relu", ()): 2}
    (site,) = report.sites
    assert " at test_override.py:" in site
    report.verify()


def test_site_names_the_line_and_the_variable():
    x = pt.vector("x")
    h = pt.maximum(x, 0)  # <site>
    h.name = "hidden"
    _, report = override_gradients(h.sum(), "guided")
    assert list(report.sites) == [
        f"pt.maximum(x, 0) 'hidden' at test_override.py:{_line('# <site>')}"
    ]


OTHERS = {
    "leaky_switch": (lambda h: pt.switch(h > 0, h, 0.1 * h), "leaky_relu", {"negative_slope": 0.1}),
    "leaky_switch_x_a": (
        lambda h: pt.switch(h > 0, h, h * 0.3),
        "leaky_relu",
        {"negative_slope": 0.3},
    ),
    "theano_leaky": (lambda h: 0.75 * h + 0.25 * abs(h), "leaky_relu", {"negative_slope": 0.5}),
    "lasagne_elu": (lambda h: pt.switch(h > 0, h, pt.expm1(h)), "elu", {"alpha": 1.0}),
    "elu_alpha": (lambda h: pt.switch(h > 0, h, 0.5 * pt.expm1(h)), "elu", {"alpha": 0.5}),
    "softplus": (lambda h: pt.softplus(h), "softplus", {"beta": 1.0}),
    "silu": (lambda h: h * pt.sigmoid(h), "silu", {}),
    "silu_reversed": (lambda h: pt.sigmoid(h) * h, "silu", {}),
}


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
@pytest.mark.parametrize("name", list(OTHERS))
def test_other_activations(name, rule):
    act, activation, params = OTHERS[name]
    x, g = pt.vector("x"), RNG.standard_normal(24)
    xv = np.linspace(-3, 3, 24) + 0.01
    y = act(x)
    (new,), report = override_gradients([y], rule)
    ref = bfp.activation_with_rule(x, activation, rule, **params)
    grads = [pt.grad(None, x, known_grads={v: pt.as_tensor(g)}) for v in (y, new, ref)]
    before, after, default, got, want = pytensor.function([x], [y, new, *grads], mode=FAST)(xv)
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert not np.allclose(got, default)
    assert report.complete and report.activations == {
        (activation, tuple(sorted(params.items()))): 1
    }
    report.verify()


# numba (PyTensor's default backend) warns that np.dot is faster on contiguous arrays
# when it compiles this graph's transposed matmul, and only then: its compiled functions
# are cached on disk, so the warning (an error under filterwarnings = error) came on the
# first run on a machine and never on the next. A performance hint from a third party,
# about a graph PyTensor lays out, not ours to change: ignored here alone.
@pytest.mark.filterwarnings("ignore:np.dot\\(\\) is faster on contiguous arrays")
def test_grad_and_jacobian_of_a_lasagne_model_compiled():
    x = pt.vector("x")
    out = mlp(x, rectify)  # 3 outputs for one example
    new, report = override_gradients(out, "guided")
    jac = jacobian(new, x)
    score = pt.grad(new[1], x)
    fn = pytensor.function([x], [jac, score])  # PyTensor's default mode, compiled
    for row in range(2):
        j, s = fn(X[row])
        for k in range(3):  # each Jacobian row is the guided gradient of output k
            e = np.zeros(3)
            e[k] = 1.0
            pre1 = X[row] @ W1 + B1
            pre2 = np.maximum(pre1, 0) @ W2 + B2
            g = e @ W3.T
            g = (g * (pre2 > 0) * (g > 0)) @ W2.T
            g = (g * (pre1 > 0) * (g > 0)) @ W1.T
            np.testing.assert_allclose(j[k], g, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(s, j[1])
    assert report.complete and report.seen == 2


def test_the_original_graph_is_untouched_and_shared_parts_kept():
    x = pt.matrix("x")
    w = pytensor.shared(W1, name="w")
    h = pt.maximum(x @ w, 0)
    other = (x @ w).sum()  # shares x @ w with the ReLU's input
    loss = h.sum() * -1.0 + other
    (new_loss, new_other), report = override_gradients([loss, other], "guided")
    assert new_other is other  # nothing in it changed: the same variable
    fn = pytensor.function([x], [pt.grad(loss, w), pt.grad(new_loss, w)], mode=FAST)
    default, guided = fn(X)
    only_other = pytensor.function([x], pt.grad(other, w), mode=FAST)(X)
    np.testing.assert_allclose(guided, only_other)  # the ReLU part is masked: g = -1 < 0
    assert not np.allclose(default, guided)
    assert report.seen == 1


def test_old_grad_assignment_on_op_from_graph_is_ignored_ours_is_not():
    xi = pt.vector("xi")
    relu_op = OpFromGraph([xi], [pt.maximum(xi, 0)])
    relu_op.grad = lambda inputs, grads: [pt.switch(grads[0] > 0, grads[0], 0)]  # the recipe
    x = pt.vector("x")
    cot = np.array([1.0, -1.0, 1.0, -1.0])
    xv = np.array([1.0, 1.0, -1.0, -1.0])
    old = pt.grad((relu_op(x) * cot).sum(), x)
    (ours,), report = override_gradients([(pt.maximum(x, 0) * cot).sum()], "deconvnet")
    got_old, got_ours = pytensor.function([x], [old, pt.grad(ours, x)], mode=FAST)(xv)
    np.testing.assert_array_equal(got_old, [1.0, -1.0, 0.0, 0.0])  # the default: .grad ignored
    np.testing.assert_array_equal(got_ours, [1.0, 0.0, 1.0, 0.0])  # deconvnet
    assert report.complete


def test_strict_raises_naming_the_node():
    x = pt.matrix("x")
    line = _line("h = pt.tanh(pt.maximum(x @ W1, 0))  # <tanh>")
    h = pt.tanh(pt.maximum(x @ W1, 0))  # <tanh>
    with pytest.raises(
        BackflipValueError,
        match=rf"cannot apply the rule 'guided' to pt\.tanh at test_override\.py:{line}: no "
        r"gradient rule covers pt\.tanh\..*strict=False",
    ):
        override_gradients(h.sum(), "guided")
    with pytest.raises(BackflipValueError, match=r"no gradient rule covers pt\.sigmoid"):
        override_gradients(pt.sigmoid(x), "deconvnet")
    slope = pytensor.shared(0.1, name="slope")
    with pytest.raises(BackflipValueError, match=r"covers leaky ReLU switch\(x > 0, x, a \* x\) "
                       r"with a symbolic a"):  # fmt: skip
        override_gradients(pt.switch(x > 0, x, slope * x), "guided")


def test_the_pytensor_dann_example_needs_strict_false():
    path = Path(__file__).parents[2] / "examples" / "pytensor_dann.py"
    spec = importlib.util.spec_from_file_location("pytensor_dann_override", path)
    dann = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = dann  # dataclasses look their module up there
    try:
        spec.loader.exec_module(dann)
        p = {k: pytensor.shared(v, name=k) for k, v in dann.init_params(seed=0).items()}
        outputs = list(dann._forward(p, pt.matrix("x", dtype=dann.FLOAT), 0.5))
    finally:
        sys.modules.pop(spec.name, None)
    with pytest.raises(BackflipValueError, match=r"no gradient rule covers pt\.tanh"):
        override_gradients(outputs, "guided")
    _, report = override_gradients(outputs, "guided", strict=False)
    # its tanh layers and sigmoid output are watched; the reversal keeps its own rule
    assert (report.seen, report.overridden, report.complete) == (4, 0, False)
    assert sorted(s.split(" at ")[0] for s in report.not_overridden) == ["pt.sigmoid"] + 3 * [
        "pt.tanh"
    ]


def test_non_strict_lists_and_counts_only_live_nodes():
    x = pt.vector("x")
    y = pt.tanh(pt.maximum(x, 0)) + x * pt.sigmoid(x)  # the sigmoid is part of the SiLU
    new, report = override_gradients(y.sum(), "guided", strict=False)
    assert (report.seen, report.overridden, report.complete) == (3, 2, False)
    assert [s.split(" at ")[0] for s in report.not_overridden] == ["pt.tanh"]
    assert "NOT overridden: pt.tanh at test_override.py:" in str(report)
    xv = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(new.eval({x: xv}), y.sum().eval({x: xv}))


def test_inner_graphs_are_reported_not_rewritten():
    x = pt.vector("x")
    ys = pytensor.scan(
        lambda h: pt.maximum(h, 0) - 1.0, outputs_info=x, n_steps=2, return_updates=False
    )
    with pytest.raises(BackflipValueError, match=r"pt\.maximum\(x, 0\) inside the Scan"):
        override_gradients(ys[-1].sum(), "guided")
    xi = pt.vector("xi")
    op = OpFromGraph([xi], [pt.maximum(xi, 0) * 2], name="mine")
    _, report = override_gradients(op(x).sum(), "guided", strict=False)
    assert report.seen == 1 and "inside the OpFromGraph" in report.not_overridden[0]
    # backflip's own ops keep their rule and are not counted
    _, report = override_gradients(bfp.guided_relu(x).sum(), "deconvnet")
    assert report.seen == 0 and not report.complete


def test_not_recognised_and_int_graphs():
    x = pt.vector("x")
    for y in (pt.clip(x, 0, 10), pt.maximum(x, 1.0), 0.5 * x * (1 + pt.erf(x / np.sqrt(2)))):
        _, report = override_gradients(y, "guided")
        assert report.seen == 0
    _, report = override_gradients(pt.maximum(pt.ivector("i"), 0), "guided")
    assert report.seen == 0


def test_user_rule():
    x = pt.matrix("x")
    new, report = override_gradients(mlp(x, rectify).sum(), lambda x, y, g: 2.0 * g)
    got = pytensor.function([x], pt.grad(new, x), mode=FAST)(X)
    np.testing.assert_allclose(got, np.ones((4, 3)) @ W3.T * 2 @ W2.T * 2 @ W1.T)
    assert report.rule == "<lambda>" and report.complete


def test_verify():
    x = pt.vector("x")
    _, report = override_gradients(x.sum(), "guided")
    with pytest.raises(BackflipValueError, match="saw no nonlinearity call"):
        report.verify()
    _, report = override_gradients(pt.maximum(x, 0).sum(), "guided")
    report.verify()
    report.verify(lambda x, y, g: 2 * g)


@pytest.mark.parametrize("rule", list(LIES))
def test_verify_catches_an_override_that_applies_another_rule(monkeypatch, rule):
    real, lie = override_mod.activation_with_rule, LIES[rule]  # counted, the wrong backward
    monkeypatch.setattr(
        override_mod, "activation_with_rule", lambda x, act, _, **p: real(x, act, lie, **p)
    )
    x = pt.matrix("x")
    _, report = override_gradients(mlp(x, rectify).sum(), rule)
    assert report.complete  # the counts alone cannot tell
    name = getattr(rule, "__name__", rule)
    with pytest.raises(
        backflip.OverrideCheckError,
        match=rf"^report\.verify\(\): relu at 0\.5 \* \(x \+ abs\(x\)\) at test_override\.py:"
        rf"{_line('0.5 * (x + abs(x))')} does not follow the rule '{name}': PyTensor's dL/dx "
        r"differs from the NumPy reference by up to [\d.e+-]+ \(at x=",
    ):
        report.verify()


def test_verify_covers_every_activation():
    x = pt.vector("x")
    h = pt.softplus(x) + x * pt.sigmoid(x) + pt.switch(x > 0, x, 0.3 * pt.expm1(x))
    _, report = override_gradients(pt.switch(h > 0, h, 0.2 * h).sum(), "guided")
    assert len(report.activations) == 4
    report.verify()
    report.verify("deconvnet")
    report.verify(user_rule)


def test_argument_errors():
    with pytest.raises(BackflipTypeError, match=r"expects a PyTensor variable or a list of them"):
        override_gradients(np.ones(3), "guided")
    with pytest.raises(BackflipTypeError, match=r"got list of ndarray\. Build the graph first"):
        override_gradients([np.ones(3)], "guided")
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidedd'"):
        override_gradients(pt.vector("x"), "guidedd")
    with pytest.raises(BackflipTypeError, match=r"`strict` must be True or False; got 1"):
        override_gradients(pt.vector("x"), "guided", strict=1)


def test_public_names_and_shared_report():
    assert bfp.override_gradients is override_gradients
    assert bfp.OverrideReport is OverrideReport
    assert {"override_gradients", "OverrideReport"} <= set(bfp.__all__)


def test_docstring_examples():
    result = doctest.testmod(override_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---- conformance: the same fixed float64 MLP as the torch adapter's override_gradients

V1, C1 = RNG.standard_normal((5, 6)), RNG.standard_normal(6)
V2, C2 = RNG.standard_normal((6, 3)), RNG.standard_normal(3)
X64, G64 = RNG.standard_normal((4, 5)), RNG.standard_normal((4, 3))


def torch_input_grad(rule):
    pytest.importorskip("torch")
    from backflip.torch._testing import override_input_grad

    return override_input_grad(rule, V1, C1, V2, C2, X64, G64)


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_conformance_with_torch(rule):
    want = torch_input_grad(rule)
    x = pt.dmatrix("x")
    loss = ((pt.maximum(x @ V1 + C1, 0) @ V2 + C2) * G64).sum()
    new, report = override_gradients(loss, rule)
    got, default = pytensor.function([x], [pt.grad(new, x), pt.grad(loss, x)], mode=FAST)(X64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(want, default, atol=1e-3)
    assert report.complete
