"""The custom_gradient contract (docs/guides/custom-gradients.md): what is Keras' own.

The contract itself (keyword arguments, the gradient count, callables without
``__name__``, the compiler) is tested once for every adapter in
tests/conformance/test_custom_contract.py. Here: a keras.Variable argument, the
frameworks' own documented custom-gradient examples with their figures (the same four in
every adapter's file), and the numpy backend's error. They run under this process's Keras
backend and (slow) once more under each other backend in a child process, with the Keras
tests of tests/conformance/test_custom_contract.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from backflip._testing import require_backend

keras = require_backend("keras")
bfk = require_backend("backflip.keras")
ops = keras.ops

custom_gradient = bfk.custom_gradient
BACKEND = keras.backend.backend()


def _np(t):
    return np.zeros(()) if t is None else np.asarray(ops.convert_to_numpy(t))


def _grads(f, *values):
    """The gradients of ``sum(f(*args))`` w.r.t. every argument, as NumPy (None -> 0)."""
    values = [np.asarray(v, "float32") for v in values]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        ts = [tf.constant(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(ts)
            y = ops.sum(f(*ts))
        return [_np(g) for g in tape.gradient(y, ts)]
    if BACKEND == "jax":
        import jax

        grads = jax.grad(lambda *a: ops.sum(f(*a)), argnums=tuple(range(len(values))))
        return [_np(g) for g in grads(*values)]
    import torch

    ts = [torch.tensor(v, requires_grad=True) for v in values]
    return [_np(g) for g in torch.autograd.grad(f(*ts).sum(), ts, allow_unused=True)]


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


scaled = custom_gradient(_scaled)


# --- variables ----------------------------------------------------------------------


def test_keras_variable_is_passed_as_its_value():
    v = keras.Variable(np.array([1.0, 2.0], "float32"))
    np.testing.assert_array_equal(_np(scaled(v, 3.0)), [3.0, 6.0])


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
SHARED = HERE.parents[1] / "conformance" / "test_custom_contract.py"
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
    """This file and the Keras tests of the shared contract (``-k keras``: their backend id;
    every test of this directory matches it too) under ``KERAS_BACKEND=backend``."""
    require_backend(backend)
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", str(HERE), str(SHARED), "-q",
           "-k", "keras and not other_keras_backends",
           "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           "-c", str(HERE.parents[2] / "pyproject.toml"), "--rootdir", str(tmp_path),
           "--junitxml", str(junit)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(backend), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
    shared = set(re.findall(r"^def (test_\w+)\(driver\b", SHARED.read_text(), re.M))
    ran = {case.get("name", "").split("[")[0] for case in ET.parse(junit).iter("testcase")
           if re.search(r"\[(.*-)?keras(-.*)?\]", case.get("name", ""))}
    assert shared and ran == shared, (sorted(shared - ran), proc.stdout[-2000:])


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
