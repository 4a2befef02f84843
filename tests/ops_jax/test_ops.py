"""backflip.jax: transformations, recompilation, validation and error messages."""

import numpy as np
import pytest

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._testing import require_backend
from backflip.rules import ACTIVATIONS, apply_rule

jax = require_backend("jax")
import jax.numpy as jnp  # noqa: E402

import backflip.jax as bfj  # noqa: E402

X = jnp.array([1.0, -2.0, 3.0])


def rev_sum(x, lambd=0.5):
    return jnp.sum(bfj.reverse_gradient(x, lambd) * jnp.array([1.0, 2.0, 3.0]))


def test_reverse_grad_jacrev_jacfwd_literal():
    want = np.array([-0.5, -1.0, -1.5], np.float32)
    np.testing.assert_allclose(jax.grad(rev_sum)(X), want)
    np.testing.assert_allclose(jax.jacrev(rev_sum)(X), want)
    np.testing.assert_allclose(jax.jacfwd(rev_sum)(X), want)
    np.testing.assert_allclose(
        jax.jacfwd(lambda x: bfj.reverse_gradient(x, 2.0))(X), -2.0 * np.eye(3)
    )
    np.testing.assert_allclose(jax.jacrev(lambda x: bfj.scale_gradient(x, 3.0))(X), 3.0 * np.eye(3))


def test_reverse_jvp_reverses_tangent_and_keeps_primal():
    y, ty = jax.jvp(lambda x: bfj.reverse_gradient(x, 3.0), (X,), (jnp.ones(3),))
    np.testing.assert_array_equal(y, X)
    np.testing.assert_array_equal(ty, [-3.0, -3.0, -3.0])
    _, ty = jax.jvp(lambda x: bfj.scale_gradient(x, -2.0), (X,), (jnp.ones(3),))
    np.testing.assert_array_equal(ty, [-2.0, -2.0, -2.0])


def test_vmap_and_jit_follow_the_rule():
    xs = jnp.arange(6.0).reshape(2, 3)
    lambds = jnp.array([1.0, 3.0])
    grads = jax.vmap(jax.grad(lambda x, lam: bfj.reverse_gradient(x, lam).sum()))(xs, lambds)
    np.testing.assert_array_equal(grads, [[-1.0] * 3, [-3.0] * 3])
    g = jax.jit(jax.grad(lambda x: bfj.clip_gradient(x * 10, -0.1, 0.1).sum()))(X)
    np.testing.assert_allclose(g, [1.0, 1.0, 1.0])  # clip(1, ±0.1) = 0.1, times 10


def test_changing_lambd_under_jit_does_not_recompile():
    step = jax.jit(jax.grad(rev_sum))
    for i in range(5):
        lambd = jnp.float32(0.1 * i)
        np.testing.assert_allclose(step(X, lambd), -0.1 * i * np.array([1, 2, 3]), rtol=1e-6)
    assert step._cache_size() == 1


def test_second_derivative_picks_lambd_squared():
    def h(x, lambd):
        return bfj.reverse_gradient(x, lambd) ** 3

    x = 2.0
    assert float(jax.grad(h)(x, 0.5)) == pytest.approx(-3 * 0.5 * 4)
    assert float(jax.grad(jax.grad(h))(x, 0.5)) == pytest.approx(6 * 0.25 * 2)
    assert float(jax.jacfwd(jax.jacrev(h))(x, 3.0)) == pytest.approx(6 * 9 * 2)


def test_scale_seed_example_108():
    assert float(jax.grad(lambda x: (6.0 * x) ** 2)(3.0)) == 216.0
    assert float(jax.grad(lambda x: bfj.scale_gradient(6.0 * x, 0.5) ** 2)(3.0)) == 108.0


def test_clip_identity_seed_example():
    assert float(jax.grad(lambda x: bfj.clip_gradient(x, -0.1, 0.1))(5.0)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: bfj.clip_gradient(x, -0.1, 0.1),
        lambda x: bfj.clip_gradient_norm(x, 1.0),
        lambda x: bfj.guided_relu(x),
    ],
    ids=["clip", "clip_norm", "guided"],
)
def test_custom_vjp_ops_refuse_forward_mode(fn):
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(fn, (X,), (jnp.ones(3),))


def test_clip_norm_zero_gradient_stays_zero():
    _, vjp = jax.vjp(lambda x: bfj.clip_gradient_norm(x, 1.0), X)
    np.testing.assert_array_equal(vjp(jnp.zeros(3))[0], np.zeros(3))
    np.testing.assert_allclose(vjp(jnp.array([0.3, 0.0, 0.4]))[0], [0.3, 0.0, 0.4])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_concrete_bad_lambd_raises(bad):
    with pytest.raises(BackflipValueError, match="`lambd` of reverse_gradient must be finite"):
        bfj.reverse_gradient(X, bad)
    with pytest.raises(BackflipValueError, match="must be finite and >= 0"):
        bfj.reverse_gradient(X, jnp.float32(bad))


def test_traced_lambd_is_not_checked():
    # a traced λ has no value yet: a negative one goes through (documented)
    g = jax.jit(jax.grad(lambda x, lam: bfj.reverse_gradient(x, lam).sum()))(X, -1.0)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


def test_parameter_errors():
    with pytest.raises(BackflipValueError, match="`factor` of scale_gradient must be finite"):
        bfj.scale_gradient(X, float("inf"))
    with pytest.raises(BackflipTypeError, match="must be a 0-d array; got shape"):
        bfj.reverse_gradient(X, jnp.ones(2))
    with pytest.raises(BackflipTypeError, match="must be a real number or a 0-d tensor"):
        bfj.reverse_gradient(X, "0.5")
    with pytest.raises(BackflipTypeError, match="floating-point 0-d array; got an array of dtype bool"):
        bfj.reverse_gradient(X, jnp.array(True))
    with pytest.raises(BackflipTypeError, match="needs a floating-point array; got dtype int"):
        bfj.reverse_gradient(jnp.arange(3), 1.0)
    with pytest.raises(BackflipValueError, match="needs at least one of `min` and `max`"):
        bfj.clip_gradient(X)
    with pytest.raises(BackflipValueError, match="`min` of clip_gradient must be <= `max`"):
        bfj.clip_gradient(X, 1.0, -1.0)
    with pytest.raises(BackflipValueError, match="`max_norm` of clip_gradient_norm must be"):
        bfj.clip_gradient_norm(X, 0.0)


def test_custom_gradient_two_inputs_and_jit():
    @bfj.custom_gradient
    def mul(a, b):
        return a * b, lambda g: (g * 10.0, g * 100.0)

    ga, gb = jax.jit(jax.grad(lambda a, b: mul(a, b).sum(), argnums=(0, 1)))(X, X)
    np.testing.assert_array_equal(ga, [10.0] * 3)
    np.testing.assert_array_equal(gb, [100.0] * 3)
    assert mul.__name__ == "mul"


def test_custom_gradient_errors():
    with pytest.raises(BackflipTypeError, match="custom_gradient decorates a function"):
        bfj.custom_gradient(3)

    @bfj.custom_gradient
    def no_pair(x):
        return x

    with pytest.raises(BackflipTypeError, match=r"must return \(output, grad_fn\); got"):
        jax.grad(no_pair)(1.0)

    @bfj.custom_gradient
    def too_many(x):
        return x, lambda g: (g, g)

    with pytest.raises(BackflipTypeError, match=r"returned 2 gradient\(s\); expected 1"):
        jax.grad(too_many)(1.0)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("rule", ["vanilla", "guided", "deconvnet"])
def test_activation_rules_match_numpy(activation, rule):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8).astype(np.float32)
    g = rng.standard_normal(8).astype(np.float32)
    y, vjp = jax.vjp(lambda v: bfj.activation_with_rule(v, activation, rule), jnp.asarray(x))
    act = ACTIVATIONS[activation]
    np.testing.assert_allclose(
        y, act.forward(x.astype(np.float64), **act.params), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        vjp(jnp.asarray(g))[0], apply_rule(rule, activation, x, g), rtol=1e-5, atol=1e-6
    )


def test_guided_differs_from_default_and_params_and_user_rule():
    x, g = jnp.array([1.0, 1.0, -1.0]), jnp.array([2.0, -2.0, 2.0])
    _, vjp = jax.vjp(jax.nn.relu, x)
    np.testing.assert_array_equal(vjp(g)[0], [2.0, -2.0, 0.0])  # the default
    _, vjp = jax.vjp(bfj.guided_relu, x)
    np.testing.assert_array_equal(vjp(g)[0], [2.0, 0.0, 0.0])
    _, vjp = jax.vjp(
        lambda v: bfj.activation_with_rule(v, "leaky_relu", "vanilla", negative_slope=0.5), x
    )
    np.testing.assert_allclose(vjp(g)[0], [2.0, -2.0, 1.0])

    def double_g(x, y, g):
        return 2 * g

    _, vjp = jax.vjp(lambda v: bfj.activation_with_rule(v, "relu", double_g), x)
    np.testing.assert_array_equal(vjp(g)[0], [4.0, -4.0, 4.0])


def test_activation_errors():
    with pytest.raises(BackflipValueError, match="no gradient rule covers the activation 'tanh'"):
        bfj.activation_with_rule(X, "tanh")
    with pytest.raises(BackflipValueError, match="unknown gradient rule 'smooth'"):
        bfj.activation_with_rule(X, "relu", "smooth")
    with pytest.raises(BackflipTypeError, match=r"takes the parameters \['alpha'\]; got unexpected \['beta'"):
        bfj.activation_with_rule(X, "elu", "guided", beta=2.0)


def test_clip_norm_under_vmap_is_per_example():
    grads = jax.vmap(jax.grad(lambda x: bfj.clip_gradient_norm(x, 1.0).sum()))(jnp.ones((2, 4)))
    np.testing.assert_allclose(grads, np.full((2, 4), 0.5))  # ||(1, 1, 1, 1)|| = 2


@pytest.mark.slow  # a child process imports jax
def test_import_pulls_in_no_other_framework():
    import subprocess
    import sys

    code = (
        "import sys, backflip.jax; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'pytensor', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
