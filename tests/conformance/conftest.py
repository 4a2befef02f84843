"""The per-backend drivers of the shared adapter tests in this directory.

Every adapter (backflip.torch, .jax, .tensorflow, .keras, .pytensor) exports the same
names (backflip._api.CORE_OPS), so each test here is written once and runs once per
backend through the ``driver`` fixture: a :class:`Driver` that supplies only what
differs between frameworks, namely how to build arrays, take a vjp, a Hessian-vector
product or the gradients of ``sum(f(*args))`` (eagerly or through the framework's
compiler), and apply ``override_gradients`` to the conformance MLP
(backflip.conformance.MLP_WEIGHTS). Every driver returns NumPy arrays.

A backend whose framework is not installed skips its own tests (and fails under
``BACKFLIP_REQUIRE_ALL=1``, see backflip._testing.require_backend); the others run.
Keras runs under the Keras backend of this process (TensorFlow unless
``KERAS_BACKEND`` says otherwise) and borrows that framework's driver for the gradients;
tests/ops_keras/test_backends.py and test_custom_contract.py run the Keras tests of this
directory again under every other Keras backend, one subprocess each. (Those children
run with a --rootdir outside the repository, where every conftest's fixtures are global:
a fixture here must not share a name with one in tests/ops_keras/conftest.py, whose
``backend`` is the Keras backend's name.)
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from backflip import BackflipTypeError
from backflip._testing import require_backend
from backflip.conformance import MLP_WEIGHTS

BACKENDS = ("torch", "jax", "tensorflow", "keras", "pytensor")


class Driver:
    """What the shared tests need from one framework (every array comes back as NumPy).

    ``bf`` is the adapter module. ``absent_grad_is_none``: an argument that gets no
    gradient comes back as None (torch, TensorFlow), else as zeros (JAX, PyTensor).
    ``compile_errors``: what a BackflipTypeError raised while compiling comes out as.
    Custom-gradient values are float32 (PyTensor: its floatX, float64 by default).
    """

    name: str
    bf = None
    absent_grad_is_none: bool
    compile_errors: tuple[type[Exception], ...] = (BackflipTypeError,)

    def context(self, case):
        """Entered around a conformance case (JAX: float64 on for the float64 cases)."""
        return contextlib.nullcontext()

    def tolerance(self, case) -> float:
        return case.tolerance()

    def sum(self, t):
        """The sum of every element of the framework array ``t``."""
        raise NotImplementedError

    def vjp(self, fn, x, g):
        """``(y, dL/dx)`` for ``y = fn(x)`` and upstream gradient ``g`` (NumPy in and out)."""
        raise NotImplementedError

    def hvp(self, h, x, g):
        """The gradient of ``sum(g * dh/dx)`` w.r.t. ``x``, ``h`` scalar: a Hessian-vector product."""
        raise NotImplementedError

    def override_vjp(self, rule, x, g):
        """``(y, dL/dx, report)`` of the conformance MLP with ``rule`` at its two ReLUs."""
        raise NotImplementedError

    def input(self, value):
        """The framework's array (PyTensor: a symbolic tensor) of the NumPy ``value``."""
        raise NotImplementedError

    def forward(self, f, *values):
        """``f(*arrays)`` as NumPy, the arrays made from ``values``."""
        raise NotImplementedError

    def grads(self, f, *values):
        """The gradients of ``sum(f(*arrays))`` w.r.t. every argument (None: no gradient)."""
        raise NotImplementedError

    def compiled(self, f, *values):
        """``(f(*arrays), grads)`` with ``f`` (and its gradient) through the framework's compiler."""
        raise NotImplementedError


def _np(t):
    return None if t is None else np.asarray(t)


class Torch(Driver):
    name, absent_grad_is_none = "torch", True
    # fullgraph=True: Dynamo wraps the error in its Unsupported, a RuntimeError whose text
    # carries ours (or, in a later torch, lets it through)
    compile_errors = (BackflipTypeError, RuntimeError)

    def __init__(self):
        self.torch = require_backend("torch")
        self.bf = require_backend("backflip.torch")

    def sum(self, t):
        return t.sum()

    def _tensor(self, value):
        return self.torch.tensor(np.asarray(value, "float32"), requires_grad=True)

    def vjp(self, fn, x, g):
        torch = self.torch
        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        (dx,) = torch.autograd.grad(y, xt, torch.as_tensor(g, dtype=y.dtype))
        return y.detach().numpy(), dx.numpy()

    def hvp(self, h, x, g):
        torch = self.torch
        xt = torch.tensor(x, requires_grad=True)
        (first,) = torch.autograd.grad(h(xt), xt, create_graph=True)
        (second,) = torch.autograd.grad((torch.as_tensor(g) * first).sum(), xt)
        return second.numpy()

    def _mlp(self):
        """The conformance network (backflip.conformance.mlp) as nn.Linear and nn.ReLU modules."""
        torch = self.torch
        net = torch.nn.Sequential(
            torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.ReLU()
        ).double()
        w1, b1, w2, b2 = (torch.from_numpy(w) for w in MLP_WEIGHTS)
        with torch.no_grad():
            for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
                layer.weight.copy_(w.T)
                layer.bias.copy_(b)
        return net

    def override_vjp(self, rule, x, g):
        net = self._mlp()
        with self.bf.override_gradients(net, rule) as report:
            y, dx = self.vjp(net, x, g)
        return y, dx, report

    def input(self, value):
        return self.torch.from_numpy(value).requires_grad_(True)

    def forward(self, f, *values):
        return f(*map(self._tensor, values)).detach().numpy()

    def _grads(self, f, values):
        ts = [self._tensor(v) for v in values]
        y = f(*ts)
        grads = self.torch.autograd.grad(y.sum(), ts, allow_unused=True)
        return y.detach().numpy(), [_np(g) for g in grads]

    def grads(self, f, *values):
        return self._grads(f, values)[1]

    def compiled(self, f, *values):
        """torch.compile(fullgraph=True) with the aot_eager backend, which traces the backward too."""
        dynamo = self.torch._dynamo
        dynamo.reset()
        try:
            return self._grads(self.torch.compile(f, backend="aot_eager", fullgraph=True), values)
        finally:
            dynamo.reset()


class Jax(Driver):
    name, absent_grad_is_none = "jax", False

    def __init__(self):
        self.jax = require_backend("jax")
        self.jnp = require_backend("jax.numpy")
        self.bf = require_backend("backflip.jax")

    def context(self, case):
        return self.jax.enable_x64(case.dtype == "float64")

    def sum(self, t):
        return self.jnp.sum(t)

    def vjp(self, fn, x, g):
        y, pull = self.jax.vjp(fn, self.jnp.asarray(x))
        (dx,) = pull(self.jnp.asarray(g, y.dtype))
        return np.asarray(y), np.asarray(dx)

    def hvp(self, h, x, g):
        jax, jnp = self.jax, self.jnp
        g = jnp.asarray(g)
        return np.asarray(jax.grad(lambda x: jnp.sum(g * jax.grad(h)(x)))(jnp.asarray(x)))

    def _mlp(self, x):
        jax, jnp = self.jax, self.jnp
        w1, b1, w2, b2 = (jnp.asarray(w) for w in MLP_WEIGHTS)
        return jax.nn.relu(jax.nn.relu(x @ w1 + b1) @ w2 + b2)

    def override_vjp(self, rule, x, g):
        fn, report = self.bf.override_gradients(self._mlp, rule)
        y, dx = self.vjp(self.jax.jit(fn), x, g)  # the rewritten function under jit
        return y, dx, report

    def _arrays(self, values):
        return [self.jnp.asarray(v, "float32") for v in values]

    def input(self, value):
        return self.jnp.asarray(value)

    def forward(self, f, *values):
        return np.asarray(f(*self._arrays(values)))

    def _grad(self, f, n):
        return self.jax.grad(lambda *a: self.jnp.sum(f(*a)), argnums=tuple(range(n)))

    def grads(self, f, *values):
        return [np.asarray(g) for g in self._grad(f, len(values))(*self._arrays(values))]

    def compiled(self, f, *values):
        xs = self._arrays(values)
        grads = self.jax.jit(self._grad(f, len(xs)))(*xs)
        return np.asarray(self.jax.jit(f)(*xs)), [np.asarray(g) for g in grads]


class TensorFlow(Driver):
    name, absent_grad_is_none = "tensorflow", True

    def __init__(self):
        self.tf = require_backend("tensorflow")
        self.bf = require_backend("backflip.tensorflow")

    def sum(self, t):
        return self.tf.reduce_sum(t)

    def vjp(self, fn, x, g):
        tf = self.tf
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        dx = tape.gradient(y, xt, output_gradients=tf.constant(g, y.dtype))
        return np.asarray(y), np.asarray(dx)

    def hvp(self, h, x, g):
        tf = self.tf
        xt, gt = tf.constant(x), tf.constant(g)
        with tf.GradientTape() as outer:
            outer.watch(xt)
            with tf.GradientTape() as inner:
                inner.watch(xt)
                out = h(xt)
            s = tf.reduce_sum(gt * inner.gradient(out, xt))
        return np.asarray(outer.gradient(s, xt))

    def override_vjp(self, rule, x, g):
        tf = self.tf

        @tf.function  # override_gradients rewrites the traced graph's ReLUs
        def mlp(x):
            w1, b1, w2, b2 = (tf.constant(w) for w in MLP_WEIGHTS)
            return tf.nn.relu(tf.nn.relu(x @ w1 + b1) @ w2 + b2)

        with self.bf.override_gradients(mlp, rule) as report:
            y, dx = self.vjp(mlp, x, g)
        return y, dx, report

    def _grads(self, f, ts):
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(ts)
            y = f(*ts)
            s = tf.reduce_sum(y)
        return y, tape.gradient(s, list(ts))

    def _run(self, run, values):
        ts = [self.tf.constant(v, self.tf.float32) for v in values]
        y, grads = run(*ts)
        return np.asarray(y), [_np(g) for g in grads]

    def input(self, value):
        return self.tf.constant(value)

    def forward(self, f, *values):
        return np.asarray(f(*(self.tf.constant(v, self.tf.float32) for v in values)))

    def grads(self, f, *values):
        return self._run(lambda *ts: self._grads(f, ts), values)[1]

    def compiled(self, f, *values):
        return self._run(self.tf.function(lambda *ts: self._grads(f, ts)), values)


class Keras(Driver):
    """backflip.keras under this process's Keras backend, with that framework's gradients."""

    name = "keras"

    def __init__(self):
        self.keras = keras = require_backend("keras")
        self.bf = require_backend("backflip.keras")
        self.backend = keras.backend.backend()
        inner = {"tensorflow": TensorFlow, "jax": Jax, "torch": Torch}.get(self.backend)
        if inner is None:
            raise AssertionError(f"no gradient driver for the Keras {self.backend!r} backend")
        self.inner = inner()
        self.absent_grad_is_none = self.inner.absent_grad_is_none
        self.compile_errors = self.inner.compile_errors
        if self.backend == "jax":  # the conformance table has float64 cases
            self.inner.jax.config.update("jax_enable_x64", True)

    def tolerance(self, case) -> float:
        tol = case.tolerance()
        if case.op == "override" and self.backend == "torch":
            # Keras' torch matmul computes float64 in float32 (its dtypes.result_type(torch.float64,
            # torch.float64) is "float32"): the plain forward is already ~4e-7 from NumPy.
            tol = max(tol, 1e-5)
        return tol

    def sum(self, t):
        return self.keras.ops.sum(t)

    def vjp(self, fn, x, g):
        return self.inner.vjp(fn, x, g)

    def hvp(self, h, x, g):
        return self.inner.hvp(h, x, g)

    def _mlp(self):
        """The conformance network (backflip.conformance.mlp) as two float64 Dense layers."""
        keras = self.keras
        model = keras.Sequential(
            [
                keras.Input((4,), dtype="float64"),
                keras.layers.Dense(5, activation="relu", dtype="float64"),
                keras.layers.Dense(3, activation="relu", dtype="float64"),
            ]
        )
        model.set_weights(list(MLP_WEIGHTS))
        return model

    def override_vjp(self, rule, x, g):
        model = self._mlp()
        with self.bf.override_gradients(model, rule) as report:
            y, dx = self.vjp(model, x, g)
        return y, dx, report

    def input(self, value):
        return self.keras.ops.convert_to_tensor(value)

    def forward(self, f, *values):
        return self.inner.forward(f, *values)

    def grads(self, f, *values):
        return self.inner.grads(f, *values)

    def compiled(self, f, *values):
        return self.inner.compiled(f, *values)


class PyTensor(Driver):
    """Symbolic inputs, compiled with pytensor.function (FAST_COMPILE: the graph is under test)."""

    name, absent_grad_is_none = "pytensor", False
    MODE = "FAST_COMPILE"

    def __init__(self):
        self.pytensor = require_backend("pytensor")
        self.pt = require_backend("pytensor.tensor")
        self.bf = require_backend("backflip.pytensor")

    def sum(self, t):
        return self.pt.sum(t)

    def _like(self, name, a):
        return self.pt.tensor(name, dtype=a.dtype, shape=(None,) * a.ndim)

    def _eval(self, inputs, outputs, values, mode=MODE):
        fn = self.pytensor.function(inputs, outputs, mode=mode, on_unused_input="ignore")
        return fn(*values)

    def vjp(self, fn, x, g):
        xs, gs = self._like("x", x), self._like("g", g)
        y = fn(xs)
        dx = self.pt.grad(None, xs, known_grads={y: gs})
        return tuple(self._eval([xs, gs], [y, dx], [x, g]))

    def hvp(self, h, x, g):
        pt = self.pt
        xs, gs = self._like("x", x), self._like("g", g)
        dx = pt.grad(pt.sum(gs * pt.grad(h(xs), xs)), xs)
        return self._eval([xs, gs], dx, [x, g])

    def override_vjp(self, rule, x, g):
        pt = self.pt
        xs, gs = self._like("x", x), self._like("g", g)
        w1, b1, w2, b2 = MLP_WEIGHTS
        out = pt.maximum(pt.maximum(xs @ w1 + b1, 0) @ w2 + b2, 0)
        y, report = self.bf.override_gradients(out, rule)
        dx = pt.grad(None, xs, known_grads={y: gs})
        return (*self._eval([xs, gs], [y, dx], [x, g]), report)

    def _inputs(self, values):
        return [self.pt.vector() if np.ndim(v) else self.pt.scalar() for v in values]

    def input(self, value):
        return self._like("x", value)

    def forward(self, f, *values):
        inputs = self._inputs(values)
        return self._eval(inputs, f(*inputs), values)

    def grads(self, f, *values):
        inputs = self._inputs(values)
        return self._eval(inputs, self.pt.grad(f(*inputs).sum(), inputs), values)

    def compiled(self, f, *values):
        """pytensor.function in its default mode: every graph rewrite, the C compiler."""
        inputs = self._inputs(values)
        y = f(*inputs)
        out, *grads = self._eval(inputs, [y, *self.pt.grad(y.sum(), inputs)], values, mode=None)
        return out, grads


DRIVERS = {"torch": Torch, "jax": Jax, "tensorflow": TensorFlow, "keras": Keras,
           "pytensor": PyTensor}
_made: dict[str, Driver] = {}


@pytest.fixture(params=BACKENDS, scope="session")
def driver(request) -> Driver:
    """The driver of one adapter; its framework missing, that backend's tests skip."""
    if request.param not in _made:
        _made[request.param] = DRIVERS[request.param]()
    return _made[request.param]
