"""backflip.tensorflow.override_gradients: tf.functions (graph and eager) and Keras models."""

import doctest

import numpy as np
import pytest

from backflip._testing import require_backend

tf = require_backend("tensorflow")
keras = require_backend("keras")

import backflip  # noqa: E402
import backflip._override_patch as patch_mod  # noqa: E402
import backflip.tensorflow._override as override_mod  # noqa: E402
from backflip import BackflipTypeError, BackflipValueError  # noqa: E402
from backflip import keras as bfk  # noqa: E402
from backflip.conformance import user_rule  # noqa: E402
from backflip.rules import apply_rule  # noqa: E402
from backflip.tensorflow import activation_with_rule, override_gradients  # noqa: E402

# the rule a lying override applies instead of each (user_rule: dL/dx = g * y)
LIES = {"vanilla": "guided", "guided": "deconvnet", "deconvnet": "vanilla", user_rule: "vanilla"}

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the Keras tests here need the TF backend"
)

RNG = np.random.default_rng(0)
W1 = tf.constant(RNG.standard_normal((5, 6)).astype("float32"))
W2 = tf.constant(RNG.standard_normal((6, 6)).astype("float32"))
W3 = tf.constant(RNG.standard_normal((6, 3)).astype("float32"))
X = tf.constant(RNG.standard_normal((4, 5)).astype("float32"))
UP = tf.constant(np.eye(3, dtype="float32")[[0, 1, 2, 1]])


def body(x):
    h = tf.nn.relu(x @ W1)
    h = tf.nn.relu(h @ W2)
    return h @ W3


def hand_rule(x, rule):
    """The rule through the two ReLUs by hand (NumPy), for upstream UP."""
    w1, w2, w3 = W1.numpy(), W2.numpy(), W3.numpy()
    a1 = x.numpy() @ w1
    a2 = np.maximum(a1, 0) @ w2
    g = apply_rule(rule, "relu", a2, UP.numpy() @ w3.T) @ w2.T
    return apply_rule(rule, "relu", a1, g) @ w1.T


def grad(fn, x=X):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x, output_gradients=UP).numpy()


@pytest.fixture(params=["graph", "eager"])
def mode(request):
    """tf.function traced (graph), or run with tf.config.run_functions_eagerly(True)."""
    tf.config.run_functions_eagerly(request.param == "eager")
    yield request.param
    tf.config.run_functions_eagerly(False)


@pytest.mark.parametrize("rule", ["guided", "deconvnet", "vanilla"])
def test_tf_function_follows_the_rule_in_both_modes(mode, rule):
    f = tf.function(body)
    default = grad(f)
    with override_gradients(f, rule) as report:
        got = grad(f)
    np.testing.assert_allclose(got, hand_rule(X, rule), rtol=1e-5, atol=1e-5)
    if rule == "vanilla":
        np.testing.assert_allclose(got, default, rtol=1e-6)
    else:
        assert not np.allclose(got, default, atol=1e-4), "not a no-op"
    assert report.complete and (report.seen, report.forwards) == (2, 1)
    np.testing.assert_allclose(grad(f), default)  # and the default again afterwards
    report.verify()


def test_gradient_override_map_is_the_silent_no_op_we_avoid():
    """Why the adapter does not use it: eagerly, TF2 ignores gradient_override_map."""

    @tf.RegisterGradient("BackflipTestZeroGrad")
    def _zero(op, grad):
        return tf.zeros_like(grad)

    graph = tf.compat.v1.get_default_graph()
    with graph.gradient_override_map({"Relu": "BackflipTestZeroGrad"}):
        eager = grad(body)  # eager: the map is not consulted
    f = tf.function(body)
    with graph.gradient_override_map({"Relu": "BackflipTestZeroGrad"}):
        traced = grad(f)  # traced in its own FuncGraph, outside the map's graph
    np.testing.assert_allclose(eager, hand_rule(X, "vanilla"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(traced, eager, rtol=1e-6)
    with override_gradients(f, "deconvnet"):
        assert not np.allclose(grad(f), eager, atol=1e-4)


def test_traces_before_inside_and_after_the_block():
    calls = []

    @tf.function
    def f(x):
        calls.append(1)  # runs once per trace
        return body(x)

    default = grad(f)
    cache = f._function_cache
    assert (f.experimental_get_tracing_count(), len(calls)) == (1, 1)
    with override_gradients(f, "guided") as report:
        guided = grad(f)  # retraced inside the block, with the rule
        assert len(calls) == 2
        np.testing.assert_allclose(grad(f), guided)  # reuses the block's trace
        assert len(calls) == 2
    assert (report.forwards, report.seen) == (2, 2)  # counts per trace, forwards per call
    assert f._function_cache is cache and type(f) is type(tf.function(body))
    assert f.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(grad(f), default)  # the earlier trace, default gradients
    assert len(calls) == 2

    g = tf.function(body)  # first called inside the block
    with override_gradients(g, "guided"):
        np.testing.assert_allclose(grad(g), guided, rtol=1e-6)
    np.testing.assert_allclose(grad(g), default, rtol=1e-6)


def test_covered_functions_and_their_parameters(mode):
    def act_body(x):
        h = x @ W1
        h = tf.nn.leaky_relu(h, alpha=0.3) + tf.nn.leaky_relu(h)
        h = tf.nn.elu(h) + tf.nn.gelu(h) + tf.nn.silu(h) + tf.nn.swish(h)
        h = tf.math.softplus(h) + tf.nn.softplus(features=h) + tf.nn.relu(h)
        return h @ W2 @ W3

    def reference(x):
        h = x @ W1
        h = sum(activation_with_rule(h, "leaky_relu", "guided", negative_slope=s)
                for s in (0.3, 0.2))  # fmt: skip
        h = sum(activation_with_rule(h, a, "guided") for a in ("elu", "gelu", "silu", "silu"))
        h = sum(activation_with_rule(h, a, "guided") for a in ("softplus", "softplus", "relu"))
        return h @ W2 @ W3

    f = tf.function(act_body)
    with override_gradients(f, "guided") as report:
        got = grad(f)
    np.testing.assert_allclose(got, grad(reference), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, grad(act_body), atol=1e-4)
    assert report.complete and report.seen == 9
    assert report.activations == {
        ("leaky_relu", (("negative_slope", 0.3),)): 1,
        ("leaky_relu", (("negative_slope", 0.2),)): 1,
        ("elu", (("alpha", 1.0),)): 1,
        ("gelu", ()): 1,
        ("silu", ()): 2,
        ("softplus", ()): 2,
        ("relu", ()): 1,
    }
    report.verify()


@pytest.mark.parametrize(
    "call, label",
    [
        (lambda h: tf.sigmoid(h), r"tf\.sigmoid"),
        (lambda h: tf.math.tanh(h), r"tf\.math\.tanh"),
        (lambda h: tf.nn.relu6(h), r"tf\.nn\.relu6"),
        (lambda h: tf.nn.silu(h, beta=2.0), r"tf\.nn\.silu\(beta=2\.0\)"),
        (lambda h: tf.nn.selu(features=h), r"tf\.nn\.selu"),
    ],
    ids=["sigmoid", "tanh", "relu6", "silu_beta", "selu"],
)
def test_strict_raises_naming_the_call_site(mode, call, label):
    @tf.function
    def net(x):
        return call(tf.nn.relu(x @ W1)) @ W2 @ W3

    # traced, autograph's converted code has no source line (this lambda is not converted)
    where = r" at test_override\.py:\d+" if mode == "eager" else r"(?: at test_override\.py:\d+)?"
    with (
        pytest.raises(BackflipValueError, match=rf"cannot apply the rule 'guided' to {label} in "
                      rf"tf\.function 'net'{where}: no gradient rule covers {label}\. .*strict=False"),
        override_gradients(net, "guided"),
    ):  # fmt: skip
        grad(net)
    with override_gradients(net, "guided", strict=False) as report:
        grad(net)
    assert (report.seen, report.overridden, report.complete) == (2, 1, False)
    assert len(report.not_overridden) == 1 and "NOT overridden" in str(report)


@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
def test_tanh_gelu_is_covered(mode, rule):
    @tf.function
    def net(x):
        return tf.nn.gelu(x, approximate=True)

    g = tf.constant(RNG.standard_normal(X.shape).astype("float32"))

    def dx_of(fn):
        with tf.GradientTape() as tape:
            tape.watch(X)
            y = fn(X)
        return y.numpy(), tape.gradient(y, X, output_gradients=g).numpy()

    y_default, dx_default = dx_of(net)
    with override_gradients(net, rule) as report:
        y, dx = dx_of(net)
    assert report.complete and report.overridden == 1
    np.testing.assert_allclose(y, y_default, rtol=1e-6, atol=1e-6)  # the same forward
    want = apply_rule(rule, "gelu", X.numpy(), g.numpy(), approximate="tanh")
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-6)
    if rule != "vanilla":
        assert not np.allclose(dx, dx_default, atol=1e-3)
    report.verify()


def test_a_gradient_taken_inside_the_function_is_not_counted():
    @tf.function
    def saliency(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.silu(x @ W1) @ W2 @ W3  # silu's rule computes sigmoids in its backward
        return tape.gradient(y, x, output_gradients=UP)

    with override_gradients(saliency, "guided") as report:
        got = saliency(X).numpy()
    assert report.complete and report.seen == 1
    expected = grad(lambda x: activation_with_rule(x @ W1, "silu", "guided") @ W2 @ W3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_restores_everything_also_after_errors():
    f = tf.function(body)
    grad(f)
    relu, cls, cache = vars(tf.nn)["relu"], type(f), f._function_cache
    with override_gradients(f, "guided"):
        assert vars(tf.nn)["relu"] is not relu and type(f) is not cls
    with pytest.raises(RuntimeError, match="boom"), override_gradients(f, "guided"):
        grad(f)
        raise RuntimeError("boom")
    with pytest.raises(BackflipValueError, match=r"tf\.sigmoid"):
        with override_gradients(g := tf.function(lambda x: tf.sigmoid(x)), "guided"):
            g(X)
    with (
        pytest.raises((ValueError, tf.errors.InvalidArgumentError)),
        override_gradients(f, "guided"),
    ):
        f(tf.ones((2, 7)))  # a shape error inside the function
    assert (
        vars(tf.nn)["relu"] is relu
        and tf.nn.relu is relu
        and vars(tf.math)["sigmoid"] is (tf.sigmoid)
    )
    assert type(f) is cls and f._function_cache is cache
    assert patch_mod._PATCHES == {} and override_mod._BLOCKS == {}
    assert patch_mod.MANAGED_TRACES == set() and getattr(patch_mod._TLS, "stack", []) == []
    np.testing.assert_allclose(grad(f), hand_rule(X, "vanilla"), rtol=1e-5, atol=1e-5)


def test_calls_outside_the_function_are_untouched():
    f = tf.function(lambda x: x @ W1)
    with override_gradients(f, "deconvnet") as report:
        got = grad(lambda x: tf.nn.relu(f(x)) @ W2 @ W3)
        tf.sigmoid(X)  # no strict error: not in the function
    assert report.seen == 0 and not report.complete
    np.testing.assert_allclose(got, grad(lambda x: tf.nn.relu(x @ W1) @ W2 @ W3), rtol=1e-6)


class TfRelu(keras.layers.Layer):
    """A custom Keras layer calling TensorFlow directly."""

    def call(self, x):
        return tf.nn.relu(x)


def keras_model():
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, activation="relu", name="fc1")(inp)
    h = TfRelu(name="tf_relu")(keras.layers.Dense(6, name="fc2")(h))
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer, w in zip(dense, (W1, W2, W3), strict=True):
        layer.set_weights([w.numpy(), np.zeros(w.shape[1], "float32")])
    return model


def test_keras_model_eager_covers_tf_nn_calls_too():
    model = keras_model()
    with bfk.override_gradients(model, "guided") as keras_report:
        grad(model)
    assert (keras_report.seen, keras_report.overridden) == (1, 1)  # tf.nn.relu: not watched
    with override_gradients(model, "guided") as report:
        got = grad(model)
    np.testing.assert_allclose(got, hand_rule(X, "guided"), rtol=1e-5, atol=1e-5)
    line = TfRelu.call.__code__.co_firstlineno + 1
    assert dict(report.sites) == {
        "layer 'fc1' (Dense)": 1,
        f"tf.nn.relu in TfRelu.call of 'tf_relu' at test_override.py:{line}": 1,
    }
    report.verify()  # both adapters' rules
    assert "call" not in vars(model) and tf.nn.relu is vars(tf.nn)["relu"]


def test_keras_model_in_a_tf_function():
    model = keras_model()

    def make_step():
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x)
            return tape.gradient(y, x, output_gradients=UP)

        return step

    step = make_step()
    default = step(X).numpy()
    for adapter in (bfk.override_gradients, override_gradients):
        with adapter(model, "guided") as report:  # traced before: no Python runs, no rule
            np.testing.assert_allclose(step(X).numpy(), default)
        assert report.seen == 0 and not report.complete
        with (
            pytest.raises(BackflipValueError, match=r"cannot follow the model into the "
                          r"tf\.function 'step': it traces the model once.*Pass that tf\.function "
                          r"to backflip\.tensorflow\.override_gradients"),
            adapter(model, "guided"),
        ):  # fmt: skip
            make_step()(X)  # traced inside: its trace would outlive the block
        assert "call" not in vars(model)
    with override_gradients(step, "guided") as report:
        got = step(X).numpy()
    np.testing.assert_allclose(got, hand_rule(X, "guided"), rtol=1e-5, atol=1e-5)
    assert report.complete and set(report.sites) == {
        "layer 'fc1' (Dense)", "tf.nn.relu in TfRelu.call of 'tf_relu' at test_override.py:"
        f"{TfRelu.call.__code__.co_firstlineno + 1}"}  # fmt: skip
    np.testing.assert_allclose(step(X).numpy(), default)


def test_argument_errors():
    with pytest.raises(BackflipTypeError, match=r"expects a tf\.function or a Keras model; got "
                       r"function\. Wrap a plain function in tf\.function"):  # fmt: skip
        with override_gradients(body, "guided"):
            pass
    f = tf.function(body)
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'guidedd'"):
        with override_gradients(f, "guidedd"):
            pass
    with (
        override_gradients(f, "guided"),
        pytest.raises(BackflipValueError, match=r"already active on this tf\.function; one rule"),
        override_gradients(f, "deconvnet"),
    ):
        pass
    assert patch_mod._PATCHES == {}


def test_user_rule_and_verify():
    def halve(x, y, g):
        return 0.5 * g

    f = tf.function(body)
    with override_gradients(f, halve) as report:
        with pytest.raises(BackflipValueError, match="saw no nonlinearity call"):
            report.verify()
        got = grad(f)
    w1, w2, w3 = W1.numpy(), W2.numpy(), W3.numpy()
    np.testing.assert_allclose(got, 0.25 * UP.numpy() @ w3.T @ w2.T @ w1.T, rtol=1e-5)
    assert report.rule == "halve"
    report.verify()
    report.verify("deconvnet")


@pytest.mark.parametrize("rule", list(LIES))
def test_verify_catches_an_override_that_applies_another_rule(monkeypatch, rule):
    real, lie = override_mod.activation_with_rule, LIES[rule]  # counted, the wrong backward
    monkeypatch.setattr(
        override_mod, "activation_with_rule", lambda x, act, _, **p: real(x, act, lie, **p)
    )
    f = tf.function(body)
    with override_gradients(f, rule) as report:
        grad(f)
    assert report.complete  # the counts alone cannot tell
    name = getattr(rule, "__name__", rule)
    with pytest.raises(
        backflip.OverrideCheckError,
        match=r"^report\.verify\(\): relu at tf\.nn\.relu in tf\.function 'body' does not "
        rf"follow the rule '{name}': TensorFlow's dL/dx differs from the NumPy reference "
        r"by up to [\d.e+-]+ \(at x=",
    ):
        report.verify()


def test_docstring_example():
    result = doctest.testmod(override_mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
