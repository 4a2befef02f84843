"""backflip.keras.override_gradients under the current Keras backend, and the others.

Run in-process under the test process's Keras backend (TensorFlow by default) and,
from ``test_under_other_backends``, in one subprocess per other backend (JAX, PyTorch).
The reference is the torch adapter's override_gradients on the same float32 weights.
"""

import doctest
import itertools
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
torch = require_backend("torch")

import backflip  # noqa: E402
import backflip._override_patch as patch_mod  # noqa: E402
import backflip.keras._override as override_mod  # noqa: E402
from backflip import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip.conformance import user_rule  # noqa: E402
from backflip.keras import override_gradients  # noqa: E402
from backflip.rules import apply_rule  # noqa: E402
from backflip.torch import override_gradients as torch_override  # noqa: E402

# the rule a lying override applies instead of each (user_rule: dL/dx = g * y)
LIES = {"vanilla": "guided", "guided": "deconvnet", "deconvnet": "vanilla", user_rule: "vanilla"}

ops = keras.ops
L = keras.layers
BACKEND = keras.backend.backend()
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 5)).astype("float32")
TARGET = np.array([0, 1, 2, 1])
UPSTREAM = np.eye(3, dtype="float32")[TARGET]  # dL/d(output) of sum(out[i, target[i]])


def weights(sizes):
    return [
        (RNG.standard_normal((m, n)).astype("float32") * 0.8,
         RNG.standard_normal(n).astype("float32") * 0.3)
        for m, n in itertools.pairwise(sizes)
    ]  # fmt: skip


MLP_W = weights([5, 7, 6, 5, 3])
ACTS_W = weights([5, 6, 6, 6, 6, 6, 6, 3])


class OpsRelu(L.Layer):
    """A custom layer whose nonlinearity is a keras.ops call in ``call``."""

    def call(self, x):
        return ops.relu(x)


class SlopedRelu(L.Layer):
    def call(self, x):
        return keras.activations.relu(x, negative_slope=0.05)


def set_weights(model, ws):
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    for layer, (w, b) in zip(dense, ws, strict=True):
        layer.set_weights([w, b])
    return model


def keras_mlp():
    """relu three ways: Dense(activation="relu"), a ReLU layer, keras.ops.relu in a layer."""
    inp = keras.Input((5,))
    h = L.Dense(7, activation="relu", name="fc1")(inp)
    h = L.ReLU(name="act2")(L.Dense(6, name="fc2")(h))
    h = OpsRelu(name="act3")(L.Dense(5, name="fc3")(h))
    return set_weights(keras.Model(inp, L.Dense(3, name="out")(h)), MLP_W)


def keras_acts():
    """Every covered activation, as layers, activation= names/functions and calls."""
    inp = keras.Input((5,))
    h = L.LeakyReLU(negative_slope=0.1, name="leaky")(L.Dense(6)(inp))
    h = L.ELU(alpha=0.5, name="elu")(L.Dense(6)(h))
    h = L.Dense(6, activation="gelu", name="gelu")(h)
    h = L.Dense(6, activation="swish", name="silu")(h)
    h = L.Dense(6, activation=keras.activations.softplus, name="softplus")(h)
    h = SlopedRelu(name="sloped")(L.Dense(6)(h))
    return set_weights(keras.Model(inp, L.Dense(3)(h)), ACTS_W)


def torch_net(ws, acts):
    mods = []
    for (w, b), act in zip(ws, [*acts, None], strict=True):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin] + ([act] if act is not None else [])
    return torch.nn.Sequential(*mods)


def torch_grad(net, rule):
    x = torch.tensor(X, requires_grad=True)
    with torch_override(net, rule) as report:
        out = net(x)
    (g,) = torch.autograd.grad(out[torch.arange(4), torch.as_tensor(TARGET)].sum(), x)
    assert report.complete
    return g.numpy()


def input_grad(vjp, model):
    return vjp(model, X, UPSTREAM)[1]


TORCH = {
    "mlp": lambda: torch_net(MLP_W, [torch.nn.ReLU() for _ in range(3)]),
    "acts": lambda: torch_net(ACTS_W, [
        torch.nn.LeakyReLU(0.1), torch.nn.ELU(0.5), torch.nn.GELU(), torch.nn.SiLU(),
        torch.nn.Softplus(), torch.nn.LeakyReLU(0.05)]),
}  # fmt: skip
KERAS = {"mlp": keras_mlp, "acts": keras_acts}


@pytest.mark.parametrize("name", ["mlp", "acts"])
@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_rule_equals_torch_adapter(vjp, name, rule):
    model = KERAS[name]()
    default = input_grad(vjp, model)
    with override_gradients(model, rule) as report:
        got = input_grad(vjp, model)
    np.testing.assert_allclose(got, torch_grad(TORCH[name](), rule), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, default, atol=1e-4), "the rule must change the gradient here"
    with override_gradients(model, "vanilla"):
        np.testing.assert_allclose(input_grad(vjp, model), default, rtol=1e-5, atol=1e-6)
    assert report.complete and report.seen == report.overridden == (3 if name == "mlp" else 6)
    report.verify()


def test_sites_counts_and_activations(vjp):
    model = keras_mlp()
    with override_gradients(model, "guided") as report:
        input_grad(vjp, model)
        model(X)
    assert (report.seen, report.overridden, report.forwards) == (6, 6, 2)
    line = OpsRelu.call.__code__.co_firstlineno + 1
    assert report.not_overridden == []
    assert dict(report.sites) == {
        "layer 'fc1' (Dense)": 2,
        "layer 'act2' (ReLU)": 2,
        f"keras.ops.relu in OpsRelu.call of 'act3' at test_override.py:{line}": 2,
    }
    assert report.activations == {("relu", ()): 6}
    assert "6/6 nonlinearity calls overridden in 2 forward pass(es)" in str(report)

    acts = keras_acts()
    with override_gradients(acts, "guided") as report:
        acts(X)
    assert report.activations == {
        ("leaky_relu", (("negative_slope", 0.1),)): 1,
        ("elu", (("alpha", 0.5),)): 1,
        ("gelu", ()): 1,
        ("silu", ()): 1,
        ("softplus", ()): 1,
        ("leaky_relu", (("negative_slope", 0.05),)): 1,
    }
    assert "keras.activations.relu in SlopedRelu.call of 'sloped'" in " ".join(report.sites)


def test_forward_values_unchanged():
    for make in KERAS.values():
        model = make()
        before = ops.convert_to_numpy(model(X))
        with override_gradients(model, "guided"):
            during = ops.convert_to_numpy(model(X))
        np.testing.assert_allclose(during, before, rtol=1e-6, atol=1e-6)


def test_user_rule(vjp):
    def double(x, y, g):
        return 2.0 * g

    model = keras.Sequential([keras.Input((5,)), L.Dense(7, activation="relu"), L.Dense(3)])
    w = model.layers[1].get_weights()[0]
    with override_gradients(model, double) as report:
        got = input_grad(vjp, model)
    np.testing.assert_allclose(got, 2.0 * UPSTREAM @ w.T @ model.layers[0].get_weights()[0].T,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert report.rule == "double" and report.complete
    report.verify()


def snapshot(model):
    """Everything a block could leave behind on the model, its layers and Keras."""
    layers = {
        layer.name: (id(layer), sorted(vars(layer)), getattr(layer, "activation", None))
        for layer in model._flatten_layers(include_self=True, recursive=True)
    }
    table = override_mod._table(BACKEND)
    functions = {(id(w.owner), w.attr): vars(w.owner)[w.attr] for w in table.watches}
    return layers, functions, model.get_config()


def assert_nothing_left(model, before):
    after = snapshot(model)
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert all(after[1][k] is v for k, v in before[1].items())
    assert not any(getattr(f, "_backflip_dispatch", False) for f in after[1].values())
    assert "call" not in vars(model) and getattr(patch_mod._TLS, "stack", []) == []
    assert patch_mod._PATCHES == {} and override_mod._ACTIVE == set()


def test_restores_everything(vjp):
    model = keras_mlp()
    before, default = snapshot(model), input_grad(vjp, model)
    relu = vars(keras.src.backend.nn)["relu"]
    with override_gradients(model, "guided"):
        assert "call" in vars(model) and vars(keras.src.backend.nn)["relu"] is not relu
        guided = input_grad(vjp, model)
    assert_nothing_left(model, before)
    np.testing.assert_allclose(input_grad(vjp, model), default)
    assert not np.allclose(guided, default)


def test_restores_after_error_in_block_and_in_forward(vjp):
    model = keras_mlp()
    before, default = snapshot(model), input_grad(vjp, model)
    with pytest.raises(RuntimeError, match="boom"), override_gradients(model, "guided"):
        input_grad(vjp, model)
        raise RuntimeError("boom")
    assert_nothing_left(model, before)
    with pytest.raises(Exception) as info, override_gradients(model, "guided"):
        model(np.ones((2, 9), "float32"))  # a shape error inside the model's call
    assert not isinstance(info.value, BackflipValueError)
    assert_nothing_left(model, before)
    tanh_model = keras.Sequential([keras.Input((5,)), L.Dense(5, activation="relu"),
                                   L.Activation("tanh", name="squash")])  # fmt: skip
    tanh_before = snapshot(tanh_model)
    with pytest.raises(BackflipValueError, match=r"to layer 'squash' \(Activation\): no "
                       r"gradient rule covers keras\.ops\.tanh"):  # fmt: skip
        with override_gradients(tanh_model, "guided") as report:
            ops.tanh(X)  # outside the model: untouched
            assert report.seen == 0
            tanh_model(X)  # strict, inside the model, after its relu: raises
    assert_nothing_left(tanh_model, tanh_before)
    assert_nothing_left(model, before)
    np.testing.assert_allclose(input_grad(vjp, model), default)


def test_keeps_an_instance_call():
    layer = L.Dense(2, activation="relu")
    own = layer.call
    layer.call = own  # an instance attribute set by the user
    with override_gradients(layer, "guided") as report:
        layer(X)
    assert vars(layer)["call"] is own and report.complete


def as_json(config):
    return json.loads(json.dumps(config))  # tuples become lists, as in a saved file


def test_save_inside_and_after_block(tmp_path):
    def make():
        model = keras.Sequential(
            [
                keras.Input((5,)),
                L.Dense(7, activation="relu"),
                L.LeakyReLU(0.1),
                L.Dense(6, activation="gelu"),
                L.Activation("softplus"),
                L.ELU(0.5),
                L.Dense(3),
            ],
            name="net",
        )
        return model  # fmt: skip

    model = make()
    model.save(tmp_path / "before.keras")
    with override_gradients(model, "guided"):
        model(X)
        model.save(tmp_path / "inside.keras")
    model.save(tmp_path / "after.keras")
    configs = {}
    for name in ("before", "inside", "after"):
        with zipfile.ZipFile(tmp_path / f"{name}.keras") as z:
            configs[name] = z.read("config.json").decode()
        assert "backflip" not in configs[name]
        reloaded = keras.saving.load_model(tmp_path / f"{name}.keras")
        assert as_json(reloaded.get_config()) == as_json(model.get_config())
        for a, b in zip(reloaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ops.convert_to_numpy(reloaded(X)),
                                      ops.convert_to_numpy(model(X)))  # fmt: skip
    assert configs["inside"] == configs["before"] == configs["after"]
    assert json.loads(configs["inside"])["config"]["layers"][1]["config"]["activation"] == "relu"


@pytest.mark.parametrize(
    "layer, label",
    [
        (lambda: L.Dense(3, activation="tanh", name="head"), r"keras\.ops\.tanh"),
        (lambda: L.Activation("sigmoid", name="head"), r"keras\.ops\.sigmoid"),
        (lambda: L.ReLU(max_value=6.0, name="head"), r"keras\.activations\.relu\(max_value=6\.0\)"),
        (lambda: L.ReLU(threshold=0.5, name="head"), r"keras\.activations\.relu\(threshold=0\.5\)"),
        (lambda: L.PReLU(name="head"), r"keras\.layers\.PReLU"),
        (lambda: L.Activation("mish", name="head"), r"keras\.activations\.mish"),
        (lambda: L.Activation("hard_silu", name="head"), r"keras\.ops\.hard_silu"),
        (lambda: L.Activation("selu", name="head"), r"keras\.ops\.selu"),
    ],
    ids=["tanh", "sigmoid", "relu6", "threshold", "prelu", "mish", "hard_silu", "selu"],
)
def test_strict_raises_naming_the_layer(layer, label):
    head = layer()
    model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="relu"), head])
    pattern = rf"cannot apply the rule 'guided' to layer 'head' \({type(head).__name__}\): no "
    with pytest.raises(BackflipValueError, match=pattern + rf"gradient rule covers {label}\. .*"
                       r"strict=False"), override_gradients(model, "guided"):  # fmt: skip
        model(X)
    with override_gradients(model, "guided", strict=False) as report:
        out = model(X)  # the default forward and gradient for the uncovered one
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(model(X)),
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    assert (report.seen, report.overridden, report.complete) == (2, 1, False)
    assert report.not_overridden == [f"layer 'head' ({type(head).__name__})"]
    assert f"NOT overridden: layer 'head' ({type(head).__name__})" in str(report)


def test_strict_names_a_call_in_a_custom_layer():
    class Relu6(L.Layer):
        def call(self, x):
            return ops.relu6(x)  # no rule covers relu6

    layer = Relu6(name="r")
    line = Relu6.call.__code__.co_firstlineno + 1
    with pytest.raises(BackflipValueError, match=rf"to keras\.ops\.relu6 in "
                       rf"Relu6\.call of 'r' at test_override\.py:{line}: no gradient rule "
                       r"covers keras\.ops\.relu6"):  # fmt: skip
        with override_gradients(layer, "deconvnet"):
            layer(X)
    with override_gradients(L.Activation(keras.activations.gelu), "deconvnet") as report:
        pass
    assert report.seen == 0  # no forward inside the block: nothing seen


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
def test_tanh_gelu_is_covered(rule, vjp):
    """``keras.ops.gelu``'s default, the tanh approximation, follows the rule."""

    class ApproxGelu(L.Layer):
        def call(self, x):
            return ops.gelu(x)

    layer, g = ApproxGelu(), RNG.standard_normal(X.shape).astype("float32")
    y_default, dx_default = vjp(layer, X, g)
    with override_gradients(layer, rule) as report:
        y, dx = vjp(layer, X, g)
    assert report.complete and report.overridden == 1
    assert "keras.ops.gelu(approximate=True)" in str(report)
    np.testing.assert_allclose(y, y_default, rtol=1e-6, atol=1e-6)  # the same forward
    want = apply_rule(rule, "gelu", X, g, approximate="tanh")
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-6)
    if rule == "vanilla":
        np.testing.assert_allclose(dx, dx_default, rtol=1e-5, atol=1e-6)
    else:
        assert not np.allclose(dx, dx_default, atol=1e-3)
    report.verify()


def test_calls_outside_the_model_are_untouched(vjp):
    model = keras.Sequential([keras.Input((5,)), L.Dense(3)])
    with override_gradients(model, "deconvnet") as report:
        y, dx = vjp(lambda t: ops.relu(model(t)), X, UPSTREAM)
        assert float(ops.convert_to_numpy(ops.sum(ops.tanh(X)))) != 0  # no strict error
    assert report.seen == 0 and not report.complete
    np.testing.assert_allclose(dx, (UPSTREAM * (y > 0)) @ model.layers[0].get_weights()[0].T,
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_verify():
    model = keras_acts()
    with override_gradients(model, "guided") as report:
        with pytest.raises(BackflipValueError, match="saw no nonlinearity call"):
            report.verify()
        model(X)
    report.verify()
    report.verify("deconvnet")
    report.verify(lambda x, y, g: 2 * g)


@pytest.mark.parametrize("rule", list(LIES))
def test_verify_catches_an_override_that_applies_another_rule(monkeypatch, rule):
    real, lie = override_mod.activation_with_rule, LIES[rule]  # counted, the wrong backward
    monkeypatch.setattr(
        override_mod, "activation_with_rule", lambda x, act, _, **p: real(x, act, lie, **p)
    )
    model = keras.Sequential([keras.Input((2,)), L.Dense(2, activation="relu", name="fc")])
    with override_gradients(model, rule) as report:
        model(X[:, :2])
    assert report.complete  # the counts alone cannot tell
    name = getattr(rule, "__name__", rule)
    with pytest.raises(
        backflip.OverrideCheckError,
        match=rf"^report\.verify\(\): relu at layer 'fc' \(Dense\) does not follow the rule "
        rf"'{name}': Keras's dL/dx differs from the NumPy reference by up to [\d.e+-]+ \(at x=",
    ):
        report.verify()


def test_argument_errors():
    with pytest.raises(BackflipTypeError, match=r"expects a Keras model or layer; got function"):
        with override_gradients(lambda x: x, "guided"):
            pass
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidedd'"):
        with override_gradients(L.ReLU(), "guidedd"):
            pass
    assert patch_mod._PATCHES == {}


def test_nesting():
    inner = keras.Sequential([keras.Input((5,)), L.Dense(5), L.ReLU(name="inner_act")],
                             name="inner")  # fmt: skip
    model = keras.Sequential([keras.Input((5,)), L.Dense(5, activation="relu", name="fc"),
                              inner, L.Dense(2)])  # fmt: skip
    with (
        override_gradients(model, "guided"),
        pytest.raises(BackflipValueError, match="already active on this Sequential; one rule"),
        override_gradients(model, "deconvnet"),
    ):
        pass
    # a block on a submodel inside one on the whole model: the inner rule wins there, and
    # each report counts only the calls it overrode
    with override_gradients(model, "guided") as outer, override_gradients(inner, "deconvnet") as r:
        model(X)
    assert (outer.seen, outer.overridden, r.seen, r.overridden) == (1, 1, 1, 1)
    assert list(outer.sites) == ["layer 'fc' (Dense)"]
    assert list(r.sites) == ["layer 'inner_act' (ReLU)"]
    assert "call" not in vars(model) and "call" not in vars(inner)


def test_predict_retraces_inside_and_is_restored():
    model = keras_mlp()
    model.predict(X, verbose=0)
    compiled = model.predict_function
    with override_gradients(model, "guided") as report:
        out = model.predict(X, verbose=0)
        assert model.predict_function is not compiled
    assert report.seen == 3 and report.complete  # traced (or run) with the block entered
    assert model.predict_function is compiled
    np.testing.assert_allclose(out, model.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


if BACKEND == "jax":

    def test_jax_jit_created_inside_the_block():
        import jax

        model = keras_mlp()

        def loss(x):
            return (model(x) * UPSTREAM).sum()

        with override_gradients(model, "guided") as report:
            got = np.asarray(jax.jit(jax.grad(loss))(X))
        assert report.complete
        np.testing.assert_allclose(got, torch_grad(TORCH["mlp"](), "guided"), rtol=1e-5, atol=1e-5)


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")  # fmt: skip
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    return env


@pytest.mark.slow  # a child process imports keras under another backend
@pytest.mark.parametrize("backend", [b for b in ("tensorflow", "jax", "torch") if b != BACKEND])
def test_under_other_backends(backend, tmp_path):
    require_backend(backend)
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
           "-p", "no:xdist", "-p", "no:randomly", "-k", "not test_under_other_backends",
           "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(backend), capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    assert proc.returncode == 0, (
        f"KERAS_BACKEND={backend} override tests failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_docstring_example():
    result = doctest.testmod(override_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
