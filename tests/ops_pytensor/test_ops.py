"""backflip.pytensor: symbolic λ, compiled mode, the ignored old recipe, errors."""

import numpy as np
import pytest

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._testing import require_backend
from backflip.rules import ACTIVATIONS, RULES, apply_rule

pytensor = require_backend("pytensor")
import pytensor.tensor as pt  # noqa: E402
from pytensor.compile.builders import OpFromGraph  # noqa: E402

import backflip.pytensor as bfp  # noqa: E402

FAST = "FAST_COMPILE"
X = np.array([1.0, -2.0, 3.0])
W = np.array([1.0, 2.0, 3.0])


def test_symbolic_lambd_one_function_many_values():
    x, lambd = pt.vector("x"), pt.scalar("lambd")
    dx = pt.grad((bfp.reverse_gradient(x, lambd) * W).sum(), x)
    fn = pytensor.function([x, lambd], dx, mode=FAST)
    for lam in (0.0, 0.5, 3.0):
        np.testing.assert_allclose(fn(X, lam), -lam * W)


def test_shared_lambd_updated_between_steps():
    lambd = pytensor.shared(np.float64(0.0), name="lambd")
    x = pt.vector("x")
    fn = pytensor.function([x], pt.grad(bfp.reverse_gradient(x, lambd).sum(), x), mode=FAST)
    np.testing.assert_array_equal(fn(X), [-0.0, -0.0, -0.0])
    lambd.set_value(np.float64(2.0))
    np.testing.assert_array_equal(fn(X), [-2.0, -2.0, -2.0])


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")
def test_compiled_default_mode_every_op():
    """One function compiled in the default mode (PyTensor 3: Numba) through every op."""
    x = pt.vector("x")
    y = (
        bfp.reverse_gradient(x, 0.5) * W
        + bfp.scale_gradient(x, -2.0) * W
        + bfp.clip_gradient(x * 10, -0.1, 0.1)
        + bfp.guided_relu(x) * W
    )
    z = pt.scalar("z")
    n = bfp.clip_gradient_norm(z, 1.0) * 5.0
    fn = pytensor.function([x, z], [y, pt.grad(y.sum(), x), pt.grad(n, z)])
    out, dx, dz = fn(X, 0.0)
    np.testing.assert_allclose(out, 2 * X * W + 10 * X + np.maximum(X, 0) * W)  # identities
    guided = np.where(X > 0, W, 0.0)
    np.testing.assert_allclose(dx, -0.5 * W - 2.0 * W + 0.1 * 10 + guided)
    assert float(dz) == pytest.approx(1.0)  # 5 clipped to norm 1


def test_old_grad_assignment_is_ignored_ours_is_used():
    xi = pt.vector("xi")
    old = OpFromGraph([xi], [xi])
    old.grad = lambda inputs, grads: [-0.5 * grads[0]]  # the Theano-era recipe
    x = pt.vector("x")
    d_old = pt.grad(old(x).sum(), x)
    d_ours = pt.grad(bfp.reverse_gradient(x, 0.5).sum(), x)
    fn = pytensor.function([x], [d_old, d_ours], mode=FAST)
    got_old, got_ours = fn(X)
    np.testing.assert_array_equal(got_old, [1.0, 1.0, 1.0])  # the default: .grad ignored
    np.testing.assert_array_equal(got_ours, [-0.5, -0.5, -0.5])


def test_seed_examples_and_second_derivative():
    x = pt.scalar("x")
    lam = pt.scalar("lam")
    halved = pt.grad(bfp.scale_gradient(6.0 * x, 0.5) ** 2, x)
    default = pt.grad((6.0 * x) ** 2, x)
    clipped = pt.grad(bfp.clip_gradient(x, -0.1, 0.1), x)
    h = bfp.reverse_gradient(x, lam) ** 3
    d1 = pt.grad(h, x)
    d2 = pt.grad(d1, x)
    fn = pytensor.function([x, lam], [halved, default, clipped, d1, d2], mode=FAST)
    got = [float(v) for v in fn(3.0, 0.5)]
    assert got[:3] == pytest.approx([108.0, 216.0, 0.1])
    assert got[3:] == pytest.approx([-3 * 0.5 * 9, 6 * 0.25 * 3])


def test_custom_gradient_two_inputs():
    @bfp.custom_gradient
    def mul(a, b):
        return a * b, lambda g: (g * 10.0, g * b * 100.0)

    a, b = pt.vector("a"), pt.vector("b")
    y = mul(a, b)
    fn = pytensor.function([a, b], [y, *pt.grad(y.sum(), [a, b])], mode=FAST)
    y_out, ga, gb = fn(X, W)
    np.testing.assert_array_equal(y_out, X * W)
    np.testing.assert_array_equal(ga, [10.0] * 3)
    np.testing.assert_array_equal(gb, 100.0 * W)
    assert mul.__name__ == "mul"


def test_custom_gradient_errors():
    with pytest.raises(BackflipTypeError, match="custom_gradient decorates a function"):
        bfp.custom_gradient(3)

    @bfp.custom_gradient
    def no_pair(x):
        return x

    with pytest.raises(BackflipTypeError, match=r"must return \(output, grad_fn\); got"):
        no_pair(pt.vector("x"))

    @bfp.custom_gradient
    def too_many(x):
        return x * 2, lambda g: (g, g)

    with pytest.raises(BackflipTypeError, match=r"returned 2 gradient\(s\); expected 1"):
        x = pt.vector("x")
        pt.grad(too_many(x).sum(), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_constant_bad_lambd_raises(bad):
    with pytest.raises(BackflipValueError, match="`lambd` of reverse_gradient must be finite"):
        bfp.reverse_gradient(pt.vector("x"), bad)
    with pytest.raises(BackflipValueError, match="must be finite and >= 0"):
        bfp.reverse_gradient(pt.vector("x"), pt.constant(bad))
    with pytest.raises(BackflipValueError, match="must be finite and >= 0"):
        bfp.reverse_gradient(pt.vector("x"), np.float32(bad))


def test_parameter_errors():
    x = pt.vector("x")
    with pytest.raises(BackflipValueError, match="`factor` of scale_gradient must be finite"):
        bfp.scale_gradient(x, float("inf"))
    with pytest.raises(BackflipTypeError, match=r"must be a 0-d tensor; got shape \(None,\)"):
        bfp.reverse_gradient(x, pt.vector("lambd"))
    with pytest.raises(BackflipTypeError, match="floating-point 0-d tensor; got a tensor of dtype"):
        bfp.reverse_gradient(x, pt.iscalar("lambd"))
    with pytest.raises(BackflipTypeError, match="must be a real number or a 0-d tensor"):
        bfp.reverse_gradient(x, "0.5")
    with pytest.raises(BackflipTypeError, match="needs a floating-point tensor; got dtype int"):
        bfp.reverse_gradient(pt.ivector("i"), 1.0)
    with pytest.raises(BackflipValueError, match="needs at least one of `min` and `max`"):
        bfp.clip_gradient(x)
    with pytest.raises(BackflipValueError, match="`min` of clip_gradient must be <= `max`"):
        bfp.clip_gradient(x, 1.0, -1.0)
    with pytest.raises(BackflipValueError, match="`max_norm` of clip_gradient_norm must be"):
        bfp.clip_gradient_norm(x, -1.0)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_rules_match_numpy(activation):
    rng = np.random.default_rng(0)
    x_val = rng.standard_normal(8)
    g_val = rng.standard_normal(8)
    x, g = pt.vector("x"), pt.vector("g")
    outs = []
    for rule in RULES:
        y = bfp.activation_with_rule(x, activation, rule)
        outs += [y, pt.grad(None, x, known_grads={y: g})]
    got = pytensor.function([x, g], outs, mode=FAST)(x_val, g_val)
    act = ACTIVATIONS[activation]
    for i, rule in enumerate(RULES):
        np.testing.assert_allclose(got[2 * i], act.forward(x_val, **act.params), rtol=1e-10)
        want = apply_rule(rule, activation, x_val, g_val)
        np.testing.assert_allclose(got[2 * i + 1], want, rtol=1e-10, atol=1e-12)


def test_guided_differs_from_default_params_and_user_rule():
    x = pt.vector("x")
    g = np.array([2.0, -2.0, 2.0])
    xv = np.array([1.0, 1.0, -1.0])

    def double_g(x, y, g):
        return 2 * g

    grads = [
        pt.grad((pt.maximum(x, 0) * g).sum(), x),
        pt.grad((bfp.guided_relu(x) * g).sum(), x),
        pt.grad((bfp.deconvnet_relu(x) * g).sum(), x),
        pt.grad(
            (bfp.activation_with_rule(x, "leaky_relu", "vanilla", negative_slope=0.5) * g).sum(), x
        ),
        pt.grad((bfp.activation_with_rule(x, "relu", double_g) * g).sum(), x),
    ]
    got = pytensor.function([x], grads, mode=FAST)(xv)
    np.testing.assert_array_equal(got[0], [2.0, -2.0, 0.0])  # the default
    np.testing.assert_array_equal(got[1], [2.0, 0.0, 0.0])
    np.testing.assert_array_equal(got[2], [2.0, 0.0, 2.0])
    np.testing.assert_allclose(got[3], [2.0, -2.0, 1.0])
    np.testing.assert_array_equal(got[4], [4.0, -4.0, 4.0])


def test_activation_errors():
    x = pt.vector("x")
    with pytest.raises(BackflipValueError, match="no gradient rule covers the activation 'tanh'"):
        bfp.activation_with_rule(x, "tanh")
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'smooth'"):
        bfp.activation_with_rule(x, "relu", "smooth")
    with pytest.raises(BackflipTypeError, match=r"takes the parameters \['alpha'\]; got unexpected \['beta'"):
        bfp.activation_with_rule(x, "elu", "guided", beta=2.0)


def test_static_shape_is_kept_so_broadcasting_works():
    x = pt.tensor("x", dtype="float32", shape=(1, 3))
    z = pt.matrix("z", dtype="float32")
    outs = [
        bfp.reverse_gradient(x, 2.0),
        bfp.clip_gradient(x, -0.1, 0.1),
        bfp.clip_gradient_norm(x, 1.0),
        bfp.guided_relu(x),
    ]
    for y in outs:
        assert y.type.shape == (1, 3) and y.dtype == "float32"
    y = outs[0] + z  # needs the static 1 to broadcast against z
    fn = pytensor.function([x, z], [y, pt.grad(y.sum(), x)], mode=FAST)
    out, dx = fn(np.ones((1, 3), "float32"), np.zeros((4, 3), "float32"))
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(dx, np.full((1, 3), -8.0, "float32"))  # 4 rows, lambd 2


def test_forward_mode_pushforward():
    """pushforward (by PyTensor's double pullback) reverses the tangent through a GRL.

    Through a clip it gives the tangent unchanged: the pullback clip(g) linearised at
    g = 0 is the identity. Documented in the README (PyTensor quick start).
    """
    from pytensor.gradient import pushforward

    x, v = pt.vector("x"), pt.vector("v")
    jv_rev = pushforward(bfp.reverse_gradient(x, 3.0), x, v)
    jv_clip = pushforward(bfp.clip_gradient(x, -0.1, 0.1), x, v)
    got_rev, got_clip = pytensor.function([x, v], [jv_rev, jv_clip], mode=FAST)(X, W)
    np.testing.assert_array_equal(got_rev, -3.0 * W)
    np.testing.assert_array_equal(got_clip, W)


@pytest.mark.slow  # a child process imports pytensor
def test_import_pulls_in_no_other_framework():
    import subprocess
    import sys

    code = (
        "import sys, backflip.pytensor; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
