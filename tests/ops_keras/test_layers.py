"""Keras layers and the λ callback under the current Keras backend."""

import numpy as np
import pytest

from backflip import BackflipValueError
from backflip._testing import require_backend
from backflip.schedules import dann_lambda

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
ops = keras.ops


@pytest.mark.parametrize(
    "layer, expected",
    [
        (lambda: bfk.GradientReversal(0.5), [-0.5, 1.0]),
        (lambda: bfk.GradientScale(-3.0), [-3.0, 6.0]),
        (lambda: bfk.GradientClip(-1.0, 0.5), [0.5, -1.0]),
    ],
)
def test_layer_gradients(vjp, layer, expected):
    y, dx = vjp(layer(), np.ones(2, "float32"), np.array([1.0, -2.0], "float32"))
    np.testing.assert_array_equal(y, [1.0, 1.0])
    np.testing.assert_allclose(dx, expected)


def test_set_lambd_changes_gradient_and_is_checked(vjp):
    layer = bfk.GradientReversal()
    assert [w.name for w in layer.non_trainable_weights] == ["lambd"]
    assert layer.trainable_weights == []
    layer.set_lambd(2.0)
    _, dx = vjp(layer, np.ones(1, "float32"))
    np.testing.assert_allclose(dx, [-2.0])
    with pytest.raises(BackflipValueError, match=r"`lambd` of GradientReversal.set_lambd must"):
        layer.set_lambd(-1.0)
    with pytest.raises(BackflipValueError, match=r"`lambd` of GradientReversal must be finite"):
        bfk.GradientReversal(float("nan"))
    with pytest.raises(BackflipValueError, match=r"`factor` of GradientScale must be finite"):
        bfk.GradientScale(float("inf"))
    with pytest.raises(BackflipValueError, match=r"GradientClip needs at least one of"):
        bfk.GradientClip()


def test_get_config_round_trip():
    for layer in (bfk.GradientReversal(0.3, name="grl"), bfk.GradientScale(0.5),
                  bfk.GradientClip(max=0.2)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert bfk.GradientReversal(0.3).get_config()["lambd"] == pytest.approx(0.3)


def test_keras_file_round_trip(tmp_path, vjp):
    inputs = keras.Input((2,))
    h = bfk.GradientClip(-0.1, 0.1)(bfk.GradientScale(2.0)(inputs))
    grl = bfk.GradientReversal(0.25, name="grl")
    model = keras.Model(inputs, keras.layers.Dense(1)(grl(h)))
    grl.set_lambd(0.75)  # set after construction: the weight, not only the config, is saved
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    layer = loaded.get_layer("grl")
    assert isinstance(layer, bfk.GradientReversal)
    assert float(layer.lambd) == pytest.approx(0.75)
    x = np.array([[1.0, -1.0]], "float32")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    _, dx = vjp(layer, np.ones(1, "float32"))
    np.testing.assert_allclose(dx, [-0.75])


_CALLS = []


class _CountTraces(keras.layers.Layer):
    """Identity that counts how often its Python ``call`` runs (once per trace when compiled)."""

    def call(self, x):
        _CALLS.append(1)
        return x


def test_scheduler_sets_lambd_every_step_without_retracing(backend):
    """y = GRL(W x), loss = mean(y), SGD lr 1: each step adds λ_t * mean(x) = λ_t to W."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    out = _CountTraces()(bfk.GradientReversal(0.0)(dense(inputs)))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.SGD(1.0), loss=lambda y_true, y_pred: ops.mean(y_pred))
    scheduler = bfk.DANNLambdaScheduler()
    x = np.ones((4, 1), "float32")
    _CALLS.clear()
    model.fit(x, x, batch_size=1, epochs=2, shuffle=False, verbose=0, callbacks=[scheduler])
    lambdas = [dann_lambda(t / 8) for t in range(8)]
    kernel = float(ops.convert_to_numpy(dense.kernel)[0, 0])
    assert kernel == pytest.approx(1.0 + sum(lambdas), rel=1e-5)
    assert scheduler.lambd_ == pytest.approx(lambdas[-1])
    if backend in ("tensorflow", "jax"):  # compiled train step: traced once, not once per λ
        assert len(_CALLS) <= 2, f"the train step was retraced: {len(_CALLS)} traces"


def test_scheduler_errors():
    with pytest.raises(BackflipValueError, match=r"`total_steps` of DANNLambdaScheduler must"):
        bfk.DANNLambdaScheduler(total_steps=0)
    with pytest.raises(BackflipValueError, match=r"`lambd_max` of dann_lambda must be >= 0"):
        bfk.DANNLambdaScheduler(lambd_max=-1.0)
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x = np.ones((2, 1), "float32")
    with pytest.raises(BackflipValueError, match=r"found no GradientReversal layer in the model"):
        model.fit(x, x, verbose=0, callbacks=[bfk.DANNLambdaScheduler()])


def test_scheduler_drives_only_the_given_layers():
    inputs = keras.Input((1,))
    driven, fixed = bfk.GradientReversal(0.0), bfk.GradientReversal(0.3)
    model = keras.Model(inputs, keras.layers.Dense(1)(fixed(driven(inputs))))
    model.compile("sgd", "mse")
    scheduler = bfk.DANNLambdaScheduler(total_steps=4, gamma=5.0, lambd_max=2.0, layers=[driven])
    x = np.ones((2, 1), "float32")
    model.fit(x, x, batch_size=1, epochs=1, verbose=0, callbacks=[scheduler])
    assert float(driven.lambd) == pytest.approx(dann_lambda(1 / 4, 5.0, 2.0))
    assert float(fixed.lambd) == pytest.approx(0.3)
