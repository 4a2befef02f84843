"""backflip.jax.override_gradients: what it recognises, counts, raises, and how it composes."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from backflip._testing import require_backend

jax = require_backend("jax")
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

import backflip  # noqa: E402
import backflip.jax as bfj  # noqa: E402
import backflip.jax._override as override_mod  # noqa: E402
from backflip._errors import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip._override_report import OverrideReport  # noqa: E402
from backflip.conformance import user_rule  # noqa: E402
from backflip.jax import override_gradients  # noqa: E402

# the rule a lying override applies instead of each (user_rule: dL/dx = g * y)
LIES = {"vanilla": "guided", "guided": "deconvnet", "deconvnet": "vanilla", user_rule: "vanilla"}

RNG = np.random.default_rng(0)
# a params pytree, as Flax's model.apply or an Equinox module would hold it
PARAMS = {
    "l1": {"w": RNG.standard_normal((5, 7)), "b": RNG.standard_normal(7)},
    "l2": {"w": RNG.standard_normal((7, 6)), "b": RNG.standard_normal(6)},
    "l3": {"w": RNG.standard_normal((6, 3)), "b": RNG.standard_normal(3)},
}
PARAMS32 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), PARAMS)
X = jnp.asarray(RNG.standard_normal((4, 5)), jnp.float32)
COT = jnp.asarray(RNG.standard_normal((4, 3)), jnp.float32)  # mixed signs: rules differ


def mlp(params, x):
    h = jax.nn.relu(x @ params["l1"]["w"] + params["l1"]["b"])
    h = jax.nn.relu(h @ params["l2"]["w"] + params["l2"]["b"])
    return h @ params["l3"]["w"] + params["l3"]["b"]


def loss(params, x):
    return jnp.sum(mlp(params, x) * COT)


def hand_rule(params, x, rule):
    """dL/dx through the MLP with the rule at each ReLU, by hand."""
    p = [params[k] for k in ("l1", "l2", "l3")]
    pre1 = x @ p[0]["w"] + p[0]["b"]
    pre2 = jnp.maximum(pre1, 0) @ p[1]["w"] + p[1]["b"]
    g = COT @ p[2]["w"].T
    for pre, w in ((pre2, p[1]["w"]), (pre1, p[0]["w"])):
        if rule == "vanilla":
            g = g * (pre > 0)
        elif rule == "guided":
            g = g * (pre > 0) * (g > 0)
        else:
            g = g * (g > 0)
        g = g @ w.T
    return g


@pytest.mark.parametrize("rule", ["guided", "deconvnet", "vanilla"])
def test_mlp_rule_equals_hand_computed(rule):
    new, report = override_gradients(loss, rule)
    got = jax.grad(new, argnums=1)(PARAMS32, X)
    np.testing.assert_allclose(got, hand_rule(PARAMS32, X, rule), rtol=1e-5, atol=1e-5)
    default = jax.grad(loss, argnums=1)(PARAMS32, X)
    if rule == "vanilla":
        np.testing.assert_allclose(got, default, rtol=1e-6)
    else:
        assert not np.allclose(got, default), "the rule must change the gradient here"
    assert report.complete and (report.seen, report.overridden, report.forwards) == (2, 2, 1)
    assert list(report.sites) == [f"jax.nn.relu at test_override.py:{_line('jax.nn.relu(x @')}",
                                  f"jax.nn.relu at test_override.py:{_line('jax.nn.relu(h @')}"]  # fmt: skip
    assert report.activations == {("relu", ()): 2}
    report.verify()


_SOURCE = Path(__file__).read_text().splitlines()


def _line(text: str) -> int:
    """The line of this file that holds ``text`` (other than a ``_line`` call)."""
    return next(i for i, line in enumerate(_SOURCE, 1) if text in line and "_line(" not in line)


def test_silent_no_op_is_impossible():
    new, report = override_gradients(loss, "guided")
    assert not report.complete and report.seen == 0  # before any call: nothing seen
    with pytest.raises(BackflipValueError, match="saw no nonlinearity call"):
        report.verify()
    guided = jax.grad(new, argnums=1)(PARAMS32, X)
    vanilla = jax.grad(override_gradients(loss, "vanilla")[0], argnums=1)(PARAMS32, X)
    assert report.complete and not np.allclose(guided, vanilla)
    # a function without a recognised nonlinearity: complete stays False
    _, empty = override_gradients(lambda x: jnp.sum(x * 2), "guided")
    jax.grad(_)(X)
    assert (empty.seen, empty.complete, empty.forwards) == (0, False, 1)


@pytest.mark.parametrize("rule", list(LIES))
def test_verify_catches_an_override_that_applies_another_rule(monkeypatch, rule):
    real, lie = override_mod.activation_with_rule, LIES[rule]  # counted, the wrong backward
    monkeypatch.setattr(
        override_mod, "activation_with_rule", lambda x, act, _, **p: real(x, act, lie, **p)
    )
    new, report = override_gradients(loss, rule)
    jax.grad(new, argnums=1)(PARAMS32, X)
    assert report.complete  # the counts alone cannot tell
    name = getattr(rule, "__name__", rule)
    with pytest.raises(
        backflip.OverrideCheckError,
        match=rf"^report\.verify\(\): relu at jax\.nn\.relu at test_override\.py:\d+, "
        rf"jax\.nn\.relu at test_override\.py:\d+ does not follow the rule '{name}': JAX's "
        r"dL/dx differs from the NumPy reference by up to [\d.e+-]+ \(at x=",
    ):
        report.verify()
    bare = OverrideReport(rule=name, _rule=rule, _checks=(override_mod._CHECKER,))
    bare.seen = 1
    bare._record("jax.nn.silu", "silu", {})
    with pytest.raises(backflip.OverrideCheckError, match=r"silu at jax\.nn\.silu does not follow"):
        bare.verify()


def test_verify_covers_the_tanh_gelu():
    new, report = override_gradients(lambda x: jnp.sum(jax.nn.gelu(x)), "guided")
    jax.grad(new)(X)
    assert report.activations == {("gelu", (("approximate", True),)): 1}
    report.verify()
    report.verify(user_rule)


def _vjp(f, x, g):
    y, vjp = jax.vjp(f, x)
    return y, vjp(g)[0]


SLOPE = {"negative_slope": 0.2}
ACTIVATIONS = {
    "relu": (lambda x: jax.nn.relu(x), "relu", {}),
    "silu": (lambda x: jax.nn.silu(x), "silu", {}),
    "swish": (lambda x: jax.nn.swish(x), "silu", {}),
    "softplus": (lambda x: jax.nn.softplus(x), "softplus", {"beta": 1.0}),
    "elu": (lambda x: jax.nn.elu(x), "elu", {"alpha": 1.0}),
    "elu_0.5": (lambda x: jax.nn.elu(x, 0.5), "elu", {"alpha": 0.5}),
    "leaky_relu": (lambda x: jax.nn.leaky_relu(x), "leaky_relu", {"negative_slope": 0.01}),
    "leaky_relu_kw": (lambda x: jax.nn.leaky_relu(x, negative_slope=0.2), "leaky_relu", SLOPE),
    "gelu_tanh": (lambda x: jax.nn.gelu(x), "gelu", {"approximate": True}),
    "gelu_exact": (lambda x: jax.nn.gelu(x, approximate=False), "gelu", {"approximate": False}),
    "maximum": (lambda x: jnp.maximum(x, 0), "relu", {}),
    "maximum_0_x": (lambda x: jnp.maximum(0.0, x), "relu", {}),
    "maximum_zeros_like": (lambda x: jnp.maximum(x, jnp.zeros_like(x)), "relu", {}),
    "lax.max": (lambda x: lax.max(x, 0.0), "relu", {}),
}


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_covered_call(name, rule):
    f, activation, params = ACTIVATIONS[name]
    x = jnp.linspace(-3, 3, 24, dtype=jnp.float32) + 0.01
    g = jnp.asarray(RNG.standard_normal(24), jnp.float32)
    new, report = override_gradients(f, rule)
    y, got = _vjp(new, x, g)
    y0, default = _vjp(f, x, g)
    np.testing.assert_array_equal(y, y0)  # forward bit for bit
    want = jnp.where(g > 0, default, 0) if rule == "guided" else jnp.where(g > 0, g, 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, default)
    assert report.complete and report.activations == {
        (activation, tuple(sorted(params.items()))): 1
    }
    line = _line('"' + name + '": (')
    assert next(iter(report.sites)).endswith(f"test_override.py:{line}")
    report.verify()


def test_user_rule_and_a_whole_model_of_every_activation():
    def model(x):
        h = jax.nn.gelu(x) + jax.nn.silu(x) + jax.nn.elu(x, 0.3) + jax.nn.softplus(x)
        return jnp.sum(jax.nn.leaky_relu(h, 0.2) + jnp.maximum(h, 0))

    new, report = override_gradients(model, lambda x, y, g: 2.0 * g)
    got = jax.grad(new)(X)
    np.testing.assert_allclose(got, jnp.full_like(X, 4 * 2 * 4.0))  # (2 + 2) * (4 * 2)
    assert (report.rule, report.seen, report.complete) == ("<lambda>", 6, True)
    report.verify()


def test_composes_with_jit_grad_vmap():
    new, report = override_gradients(loss, "guided")
    want = hand_rule(PARAMS32, X, "guided")
    dx = jax.grad(new, argnums=1)
    np.testing.assert_allclose(jax.jit(dx)(PARAMS32, X), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.grad(jax.jit(new), 1)(PARAMS32, X), want, rtol=1e-5, atol=1e-5)
    # vmap(grad): one example at a time, each with its own row of COT
    per_example = jax.vmap(
        jax.grad(override_gradients(lambda p, x, c: jnp.sum(mlp(p, x) * c), "guided")[0], 1),
        in_axes=(None, 0, 0),
    )
    np.testing.assert_allclose(per_example(PARAMS32, X, COT), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(per_example)(PARAMS32, X, COT), want, rtol=1e-5, atol=1e-5)
    batched = jax.vmap(new, in_axes=(None, 0))(PARAMS32, X[:, None])
    np.testing.assert_allclose(batched, jax.vmap(loss, (None, 0))(PARAMS32, X[:, None]), rtol=1e-6)
    assert report.complete


def test_counting_happens_at_trace_time():
    new, report = override_gradients(loss, "guided")
    step = jax.jit(jax.grad(new, argnums=1))
    for _ in range(3):
        step(PARAMS32, X)
    assert (report.forwards, report.seen) == (1, 2)  # traced once, cached afterwards
    jax.jit(jax.grad(new, argnums=1))(PARAMS32, X)  # a new jit traces again
    assert (report.forwards, report.seen) == (2, 4)
    new(PARAMS32, X)
    new(PARAMS32, X)  # eager calls trace every time
    assert (report.forwards, report.seen, report.overridden) == (4, 8, 8)


def test_pytree_module_and_static_arguments():
    @jax.tree_util.register_pytree_node_class
    class MLP:  # an Equinox-style module: a pytree with __call__
        def __init__(self, params):
            self.params = params

        def __call__(self, x, *, train: bool = False):
            out = mlp(self.params, x)
            return out * 0.5 if train else out  # a Python bool stays static

        def tree_flatten(self):
            return (self.params,), None

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(*children)

    model = MLP(PARAMS32)

    def f(m, x, train):
        return jnp.sum(m(x, train=train) * COT)

    new, report = override_gradients(f, "guided")
    got = jax.jit(jax.grad(new, argnums=1), static_argnums=2)(model, X, False)
    np.testing.assert_allclose(got, hand_rule(PARAMS32, X, "guided"), rtol=1e-5, atol=1e-5)
    grads = jax.grad(new)(model, X, True)  # gradients w.r.t. the module's params
    assert isinstance(grads, MLP) and grads.params["l1"]["w"].shape == (5, 7)
    assert report.complete


def test_higher_order_primitives_are_rewritten():
    ws = jnp.asarray(np.abs(RNG.standard_normal((3, 4, 4))), jnp.float32)

    @jax.jit
    def inner(h):
        return jax.nn.relu(h)

    def f(x):
        x, _ = lax.scan(lambda c, w: (jax.nn.relu(c @ w), None), x, ws)
        x = lax.fori_loop(0, 2, lambda i, c: jax.nn.silu(c), x)
        x = lax.cond(jnp.sum(x) > -1e9, jax.nn.relu, jax.nn.softplus, x)
        x = jax.checkpoint(lambda c: jax.nn.elu(c))(x)
        return -jnp.sum(inner(x))

    x = jnp.asarray(RNG.standard_normal(4), jnp.float32) + 2.0
    new, report = override_gradients(f, "guided")
    np.testing.assert_array_equal(new(x), f(x))
    # the upstream gradient is negative everywhere: guided zeroes every input gradient
    np.testing.assert_array_equal(jax.jit(jax.grad(new))(x), np.zeros(4))
    assert np.any(jax.grad(f)(x) != 0)
    # traced twice (new(x), then under jit(grad)): the scan body counts once per trace
    assert report.forwards == 2 and report.seen == 2 * 6 and report.complete
    assert report.activations == {("relu", ()): 6, ("silu", ()): 2, ("softplus", (("beta", 1.0),)): 2,
                                  ("elu", (("alpha", 1.0),)): 2}  # fmt: skip
    sites = "\n".join(report.sites)
    assert f"jax.nn.relu at test_override.py:{_line('lax.cond(jnp.sum(x)')}" in sites


def test_while_loop_body_is_rewritten():
    def f(x):
        return lax.while_loop(lambda c: c[1] < 3, lambda c: (jax.nn.relu(c[0]) - 1, c[1] + 1),
                              (x, 0))[0]  # fmt: skip

    new, report = override_gradients(f, "guided")
    x = jnp.array([5.0, -1.0])
    np.testing.assert_array_equal(jax.jit(new)(x), f(x))
    assert report.activations == {("relu", ()): 1}


def test_uncovered_strict_raises_naming_call_site():
    line = _line("return jnp.tanh(jax.nn.relu(x))")

    def f(x):
        return jnp.tanh(jax.nn.relu(x))

    with pytest.raises(
        BackflipValueError,
        match=rf"cannot apply the rule 'guided' to tanh at test_override\.py:{line}: no gradient "
        r"rule covers tanh\..*strict=False",
    ):
        override_gradients(f, "guided")[0](X)
    for fn, label in [
        (jax.nn.sigmoid, r"logistic \(jax\.nn\.sigmoid\)"),
        (jax.nn.selu, r"jax\.nn\.selu"),
        (jax.nn.mish, r"jax\.nn\.mish"),
        (jax.nn.relu6, r"jax\.nn\.relu6"),
        (jax.nn.hard_swish, r"jax\.nn\.hard_silu"),
    ]:
        with pytest.raises(BackflipValueError, match=f"no gradient rule covers {label}"):
            jax.jit(override_gradients(fn, "deconvnet")[0])(X)


def test_non_strict_keeps_uncovered_whole_and_lists_them():
    def f(x):
        return jnp.sum(jax.nn.selu(x) + jax.nn.relu6(x) + jnp.tanh(jax.nn.relu(x)))

    new, report = override_gradients(f, "guided", strict=False)
    x = jnp.linspace(-3, 8, 12) + 0.05
    np.testing.assert_array_equal(new(x), f(x))
    guided = jax.grad(new)(x)
    # the ELU inside selu and the max inside relu6 keep their default gradient
    want = jax.grad(lambda x: jnp.sum(jax.nn.selu(x) + jax.nn.relu6(x)))(x)
    want = want + jnp.where(x > 0, 1 - jnp.tanh(jax.nn.relu(x)) ** 2, 0)
    np.testing.assert_allclose(guided, want, rtol=1e-6)
    assert (report.seen, report.overridden, report.forwards) == (8, 2, 2)  # two traces
    assert not report.complete
    assert [s.split(" at ")[0] for s in report.not_overridden] == 2 * [
        "jax.nn.selu", "jax.nn.relu6", "tanh"]  # fmt: skip
    assert "NOT overridden: tanh at test_override.py:" in str(report)


def test_traced_parameter_is_not_covered():
    f = jax.jit(override_gradients(lambda x, a: jax.nn.leaky_relu(x, a), "guided")[0])
    with pytest.raises(BackflipValueError, match=r"covers jax\.nn\.leaky_relu with a traced "
                       r"negative_slope"):  # fmt: skip
        f(X, 0.2)
    eager, report = override_gradients(lambda x, a: jax.nn.elu(x, a), "guided")
    eager(X, 0.2)  # a Python float is a constant: covered
    assert report.activations == {("elu", (("alpha", 0.2),)): 1}


def test_kept_custom_derivatives_report_what_they_hide():
    @jax.custom_jvp
    def mine(x):
        return jax.nn.relu(x) * 2

    mine.defjvp(lambda p, t: (mine(p[0]), 2 * t[0]))
    line = _line("return jax.nn.relu(x) * 2")
    with pytest.raises(
        BackflipValueError,
        match=rf"jax\.nn\.relu inside the custom_jvp_call mine \(whose own derivative is kept\) "
        rf"at test_override\.py:{line}",
    ):
        override_gradients(mine, "guided")[0](X)
    new, report = override_gradients(lambda x: jnp.sum(mine(x)), "guided", strict=False)
    np.testing.assert_array_equal(jax.grad(new)(X), np.full(X.shape, 2.0))  # its own rule
    assert (report.seen, report.overridden) == (1, 0) and len(report.not_overridden) == 1


def test_backflip_rules_in_fn_are_kept_and_inner_override_wins():
    def f(x):
        return jnp.sum(bfj.deconvnet_relu(x) + jax.nn.relu(x))

    new, report = override_gradients(f, "guided")
    x = jnp.array([1.0, -1.0])
    # deconvnet_relu keeps its rule (g passes where x < 0); the plain relu becomes guided
    np.testing.assert_array_equal(jax.grad(new)(x), [2.0, 1.0])
    assert (report.seen, report.overridden) == (1, 1)
    inner, inner_report = override_gradients(lambda x: jnp.sum(jax.nn.relu(x)), "deconvnet")
    outer, outer_report = override_gradients(lambda x: inner(x), "guided")
    np.testing.assert_array_equal(jax.grad(outer)(x), [1.0, 1.0])  # deconvnet, not guided
    assert (inner_report.seen, outer_report.seen) == (1, 0)


def test_not_recognised_spellings():
    def f(x):
        return jnp.sum(jnp.where(x > 0, x, 0) + jnp.clip(x, 0) + jnp.maximum(x, 1.0))

    @jax.jit
    def relu(x):  # a user function called relu is not jax.nn.relu
        return jnp.where(x > 0, x, 0.0)

    for fn in (f, lambda x: jnp.sum(relu(x))):
        _, report = override_gradients(fn, "guided")
        _(X)
        assert report.seen == 0 and not report.complete


def test_name_scopes_and_source_lines_survive_the_rewrite():
    def f(x):
        with jax.named_scope("block"):
            return jax.nn.relu(jnp.sin(x))

    new, _ = override_gradients(f, "guided")
    eqns = jax.make_jaxpr(new)(X).jaxpr.eqns
    assert [e.primitive.name for e in eqns] == ["sin", "custom_vjp_call"]
    assert all(str(e.source_info.name_stack) == "block" for e in eqns)
    line = _line("return jax.nn.relu(jnp.sin(x))")
    assert [override_mod._user_frame(e).start_line for e in eqns] == [line, line]


def test_int_inputs_are_left_alone():
    new, report = override_gradients(lambda x: jax.nn.relu(x) + jnp.maximum(x, 0), "guided")
    np.testing.assert_array_equal(new(jnp.array([-1, 2])), [0, 4])
    assert report.seen == 0


def test_argument_errors():
    with pytest.raises(BackflipTypeError, match=r"expects a function; got int\. Pass the function"):
        override_gradients(3, "guided")
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidedd'"):
        override_gradients(loss, "guidedd")
    with pytest.raises(BackflipTypeError, match=r"`strict` must be True or False; got 'yes'"):
        override_gradients(loss, "guided", strict="yes")


def test_public_names_and_shared_report():
    assert bfj.override_gradients is override_gradients
    assert bfj.OverrideReport is OverrideReport
    assert {"override_gradients", "OverrideReport"} <= set(bfj.__all__)


def test_docstring_examples():
    result = doctest.testmod(override_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---- conformance: the same fixed float64 MLP as the torch adapter's override_gradients

W1 = RNG.standard_normal((5, 6))
B1 = RNG.standard_normal(6)
W2 = RNG.standard_normal((6, 3))
B2 = RNG.standard_normal(3)
X64 = RNG.standard_normal((4, 5))
C64 = RNG.standard_normal((4, 3))


def torch_input_grad(rule):
    pytest.importorskip("torch")
    from backflip.torch._testing import override_input_grad

    return override_input_grad(rule, W1, B1, W2, B2, X64, C64)


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_conformance_with_torch(rule):
    want = torch_input_grad(rule)
    with jax.enable_x64(True):

        def f(x):
            return jnp.sum((jax.nn.relu(x @ W1 + B1) @ W2 + B2) * C64)

        new, report = override_gradients(f, rule)
        got = jax.jit(jax.grad(new))(jnp.asarray(X64))
        default = jax.grad(f)(jnp.asarray(X64))
        assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(want, np.asarray(default), atol=1e-3)
    assert report.complete
