"""The custom_gradient contract (docs/guides/custom-gradients.md) in the Keras adapter.

The same tests exist for every adapter (tests/ops_<backend>/test_custom_contract.py):
keyword arguments, the gradient count, callables without ``__name__``, the compiler,
and the frameworks' own documented custom-gradient examples with their figures.
They run under this process's Keras backend, and (slow) once more under each other
backend in a child process.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
ops = keras.ops

from backflip import BackflipTypeError  # noqa: E402

custom_gradient = bfk.custom_gradient
BACKEND = keras.backend.backend()
ONES = [1.0, 1.0]


def _np(t):
    return np.zeros(()) if t is None else np.asarray(ops.convert_to_numpy(t))


def _grads(f, *values, compiled=False):
    """The gradients of ``sum(f(*args))`` w.r.t. every argument, as NumPy (None -> 0).

    ``compiled``: through the backend's compiler (tf.function, jax.jit, torch.compile).
    """
    values = [np.asarray(v, "float32") for v in values]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def grads(*ts):
            with tf.GradientTape() as tape:
                tape.watch(ts)
                y = ops.sum(f(*ts))
            return tape.gradient(y, list(ts))

        grads = tf.function(grads) if compiled else grads
        return [_np(g) for g in grads(*map(tf.constant, values))]
    if BACKEND == "jax":
        import jax

        grads = jax.grad(lambda *a: ops.sum(f(*a)), argnums=tuple(range(len(values))))
        grads = jax.jit(grads) if compiled else grads
        return [_np(g) for g in grads(*values)]
    import torch

    fn = torch.compile(f, backend="aot_eager", fullgraph=True) if compiled else f
    ts = [torch.tensor(v, requires_grad=True) for v in values]
    return [_np(g) for g in torch.autograd.grad(fn(*ts).sum(), ts, allow_unused=True)]


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


scaled = custom_gradient(_scaled)


# --- keyword arguments ----------------------------------------------------------------


def test_keyword_arguments_are_passed_and_get_no_gradient():
    x, bias = ops.convert_to_tensor([1.0, 2.0]), ops.convert_to_tensor([5.0, 6.0])
    np.testing.assert_array_equal(_np(scaled(x, 3.0, bias=bias, power=2)), [8.0, 18.0])
    gx, gbias = _grads(lambda x, b: scaled(x, 3.0, bias=b), [1.0, 2.0], [5.0, 6.0])
    np.testing.assert_array_equal(gx, [10.0, 10.0])
    np.testing.assert_array_equal(gbias, 0.0)  # a constant: no (zero) gradient


def test_keyword_only_tensor_is_a_constant():
    y = scaled(2.0, 3.0, bias=ops.convert_to_tensor([5.0, 6.0]))  # no positional tensor
    np.testing.assert_array_equal(_np(y), [11.0, 12.0])


def test_keras_variable_is_passed_as_its_value():
    v = keras.Variable(np.array([1.0, 2.0], "float32"))
    np.testing.assert_array_equal(_np(scaled(v, 3.0)), [3.0, 6.0])


# --- the gradient count ---------------------------------------------------------------


def test_one_gradient_per_positional_argument_tensor_or_not():
    @custom_gradient
    def affine(w, x, name, b):  # name: a string argument, which gets None
        return w * x + b, lambda g: (g * x, g * w, None, None)

    gw, gx, gb = _grads(lambda w, x, b: affine(w, x, "layer", b), 2.0, 3.0, 1.0)
    assert (float(gw), float(gx), float(gb)) == (3.0, 2.0, 0.0)


def test_gradient_for_a_non_tensor_argument_is_discarded():
    @custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, g * x)  # c is a float: its gradient has no taker

    np.testing.assert_array_equal(_grads(lambda x: mul(x, 4.0), ONES)[0], [4.0, 4.0])


@pytest.mark.parametrize(("grads", "n"), [(lambda g: (10.0 * g,), 1), (lambda g: (g, None, g), 3)])
def test_wrong_count_names_both_counts_and_the_rule(grads, n):
    @custom_gradient
    def two(x, c):
        return x * c, grads

    with pytest.raises(BackflipTypeError, match=(
        rf"two returned {n} gradient\(s\); expected 2, one per positional argument of this "
        r"call\. The rule: grad_fn returns one gradient per positional argument, tensor or "
        r"not.*keyword arguments are constants")):
        _grads(lambda x: two(x, 3.0), ONES)


# --- callables without __name__ -------------------------------------------------------


def test_partial_and_callable_object():
    part = custom_gradient(functools.partial(_scaled, bias=1.0))
    assert part.__name__ == "partial(_scaled)"
    np.testing.assert_array_equal(_grads(lambda x: part(x, 3.0), ONES)[0], [10.0, 10.0])

    class Halve:
        def __call__(self, x):
            return x / 2, lambda g: -g

    halve = custom_gradient(Halve())
    assert halve.__name__ == "test_partial_and_callable_object.<locals>.Halve object"
    np.testing.assert_array_equal(_grads(halve, ONES)[0], [-1.0, -1.0])

    bad = custom_gradient(functools.partial(lambda x, c, *, k: (x * c * k, lambda g: g), k=2.0))
    with pytest.raises(BackflipTypeError, match=r"partial\(<lambda>\) returned 1 .* expected 2"):
        _grads(lambda x: bad(x, 1.0), ONES)


# --- the compiler ---------------------------------------------------------------------


def test_backend_compiler_with_keywords_partial_and_object():
    part = custom_gradient(functools.partial(_scaled, power=2))

    class Twice:
        def __call__(self, x, *, k):
            return x * k, lambda g: 2 * g

    twice = custom_gradient(Twice())

    def f(x, bias):
        return scaled(x, 3.0, bias=bias) + part(x, 1.0, bias=bias) + twice(x, k=5.0)

    gx, gbias = _grads(f, [1.0, 2.0], [0.5, 0.5], compiled=True)
    np.testing.assert_array_equal(gx, [22.0, 22.0])
    np.testing.assert_array_equal(gbias, 0.0)


# --- the frameworks' documented examples ----------------------------------------------


def test_pytorch_mulconstant_example():
    """PyTorch, "Extending PyTorch": MulConstant, ``y = x * c``; backward ``(g * c, None)``."""

    @custom_gradient
    def mul_constant(tensor, constant):
        return tensor * constant, lambda grad_output: (grad_output * constant, None)

    x = ops.convert_to_tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(_np(mul_constant(x, 2.5)), [2.5, 5.0, 7.5])
    np.testing.assert_array_equal(_grads(lambda t: mul_constant(t, 2.5), [1.0, 2.0, 3.0])[0],
                                  [2.5] * 3)


def test_jax_clip_gradient_example():
    """JAX custom_vjp tutorial: ``clip_gradient(lo, hi, x)`` under ``vmap(grad(clip_sin))``.

    The tutorial plots sin(t) and the gradient of clip_sin over t = linspace(0, 10, 1000):
    cos(t) clipped to [-0.75, 0.75] (an elementwise function, so one gradient gives every
    per-sample gradient).
    """

    @custom_gradient
    def clip_gradient(lo, hi, x):
        return x, lambda g: (None, None, ops.clip(g, lo, hi))

    def clip_sin(x):
        return ops.sin(clip_gradient(-0.75, 0.75, x))

    t = np.linspace(0, 10, 1000).astype("float32")
    np.testing.assert_allclose(_np(clip_sin(ops.convert_to_tensor(t))), np.sin(t), rtol=1e-6)
    (grad,) = _grads(clip_sin, t)
    np.testing.assert_allclose(grad, np.clip(np.cos(t), -0.75, 0.75), rtol=1e-6)
    assert (grad.max(), grad.min()) == (0.75, -0.75)
    assert _grads(ops.sin, t)[0].max() == 1.0  # the unclipped gradient reaches 1


def test_tensorflow_log1pexp_example():
    """TensorFlow's tf.custom_gradient docs (and keras.ops.custom_gradient's): at x = 100 the
    stable gradient is 1.0, the naive one NaN."""

    @custom_gradient
    def log1pexp(x):
        e = ops.exp(x)
        return ops.log(1 + e), lambda upstream: upstream * (1 - 1 / (1 + e))

    (stable,) = _grads(log1pexp, 100.0)
    (naive,) = _grads(lambda x: ops.log(1 + ops.exp(x)), 100.0)
    assert float(stable) == 1.0 and np.isnan(naive)


def test_pytensor_opfromgraph_rescale_dy_example():
    """PyTensor's OpFromGraph docs: ``e = x + y * z`` with dy overridden to ``z * 2``;
    ``fn(2., 3., 4.)`` gives ``[1., 8., 3.]``."""

    @custom_gradient
    def e(x, y, z):
        return x + y * z, lambda g: (g, z * 2, g * y)

    assert [float(g) for g in _grads(e, 2.0, 3.0, 4.0)] == [1.0, 8.0, 3.0]


# --- the other Keras backends ---------------------------------------------------------

HERE = Path(__file__).resolve()
OTHER_BACKENDS = [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    return env


@pytest.mark.slow  # a child process imports keras on another backend
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_contract_under_other_keras_backends(backend, tmp_path):
    require_backend(backend)
    cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-k", "not other_keras_backends",
           "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           "-c", str(HERE.parents[2] / "pyproject.toml"), "--rootdir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(backend), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.slow  # a child process imports keras on numpy
def test_numpy_backend_raises_instead_of_dropping_the_gradient(tmp_path):
    script = (
        "import numpy as np, backflip.keras as bfk\n"
        "from backflip import BackflipError\n"
        "f = bfk.custom_gradient(lambda x: (x * 2, lambda g: g))\n"
        "try:\n    f(np.ones(2, 'float32'))\n"
        "except BackflipError as e:\n    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env("numpy"),
                          capture_output=True, text=True, timeout=120)
    assert "custom_gradient function <lambda> changes a gradient, but the Keras 'numpy' " \
        "backend computes no gradients" in proc.stdout, proc.stdout + proc.stderr
