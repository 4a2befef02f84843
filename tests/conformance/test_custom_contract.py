"""The custom_gradient contract (docs/guides/custom-gradients.md) in every adapter.

Keyword arguments, the gradient count, callables without ``__name__``, a missing
gradient and the compiler, once per backend through the ``driver`` fixture
(conftest.py): ``driver.grads`` gives the gradients of ``sum(f(*args))`` w.r.t. every
argument, ``driver.compiled`` the same through the framework's compiler (torch.compile
with fullgraph, jax.jit, tf.function, the Keras backend's, pytensor.function in its
default mode). What only one framework has (its variables, torch.compile's graph count,
jit tracing a float) and the frameworks' own documented examples are in
tests/ops_<backend>/test_custom_contract.py.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from backflip import BackflipTypeError

ONES = [1.0, 1.0]
COUNT_MESSAGE = (
    r"two returned {n} gradient\(s\); expected 2, one per positional argument of this "
    r"call\. The rule: grad_fn returns one gradient per positional argument, tensor or "
    r"not.*keyword arguments are constants"
)


def _scaled(x, c, *, bias=0.0, power=1):
    """``y = c * x**power + bias``; the rule ``dL/dx = 10 * g`` is not the derivative."""
    return c * x**power + bias, lambda g: (10.0 * g, None)


def _assert_no_gradient(driver, grad, shape):
    """An argument that gets no gradient: None (torch, TensorFlow) or zeros (JAX, PyTensor)."""
    if driver.absent_grad_is_none:
        assert grad is None, grad
    else:
        assert np.shape(grad) == shape and not np.any(grad), grad


# --- keyword arguments ----------------------------------------------------------------


def test_keyword_arguments_are_passed_and_get_no_gradient(driver):
    scaled = driver.bf.custom_gradient(_scaled)
    y = driver.forward(lambda x, b: scaled(x, 3.0, bias=b, power=2), [1.0, 2.0], [5.0, 6.0])
    np.testing.assert_array_equal(y, [8.0, 18.0])
    gx, gbias = driver.grads(lambda x, b: scaled(x, 3.0, bias=b), [1.0, 2.0], [5.0, 6.0])
    np.testing.assert_array_equal(gx, [10.0, 10.0])
    _assert_no_gradient(driver, gbias, (2,))  # a constant


def test_keyword_only_tensor_is_a_constant(driver):
    scaled = driver.bf.custom_gradient(_scaled)
    # no positional array: fn runs as it is, nothing to differentiate here
    y = driver.forward(lambda b: scaled(2.0, 3.0, bias=b), [5.0, 6.0])
    np.testing.assert_array_equal(y, [11.0, 12.0])
    (gbias,) = driver.grads(lambda b: scaled(2.0, 3.0, bias=b), [5.0, 6.0])
    _assert_no_gradient(driver, gbias, (2,))  # a constant, though y = 6 + bias


# --- the gradient count ---------------------------------------------------------------


def test_one_gradient_per_positional_argument_tensor_or_not(driver):
    @driver.bf.custom_gradient
    def affine(w, x, name, b):  # name: a string argument, which gets None
        return w * x + b, lambda g: (g * x, g * w, None, None)

    gw, gx, gb = driver.grads(lambda w, x, b: affine(w, x, "layer", b), 2.0, 3.0, 1.0)
    assert (float(gw), float(gx)) == (3.0, 2.0)
    _assert_no_gradient(driver, gb, ())  # b's gradient is None in the rule


def test_gradient_for_a_non_tensor_argument_is_discarded(driver):
    @driver.bf.custom_gradient
    def mul(x, c):
        return x * c, lambda g: (g * c, g * x)  # c is a float: its gradient has no taker

    (gx,) = driver.grads(lambda x: mul(x, 4.0), ONES)
    np.testing.assert_array_equal(gx, [4.0, 4.0])


@pytest.mark.parametrize(("grads", "n"), [(lambda g: (10.0 * g,), 1), (lambda g: (g, None, g), 3)],
                         ids=["1", "3"])
def test_wrong_count_names_both_counts_and_the_rule(driver, grads, n):
    @driver.bf.custom_gradient
    def two(x, c):
        return x * c, grads

    with pytest.raises(BackflipTypeError, match=COUNT_MESSAGE.format(n=n)):
        driver.grads(lambda x: two(x, 3.0), ONES)


# --- callables without __name__ -------------------------------------------------------


def test_partial_and_callable_object(driver):
    custom_gradient = driver.bf.custom_gradient
    part = custom_gradient(functools.partial(_scaled, bias=1.0))
    assert part.__name__ == "partial(_scaled)"
    np.testing.assert_array_equal(driver.grads(lambda x: part(x, 3.0), ONES)[0], [10.0, 10.0])

    class Halve:
        def __call__(self, x):
            return x / 2, lambda g: -g

    halve = custom_gradient(Halve())
    assert halve.__name__ == "test_partial_and_callable_object.<locals>.Halve object"
    np.testing.assert_array_equal(driver.grads(halve, ONES)[0], [-1.0, -1.0])

    bad = custom_gradient(functools.partial(lambda x, c, *, k: (x * c * k, lambda g: g), k=2.0))
    with pytest.raises(BackflipTypeError, match=r"partial\(<lambda>\) returned 1 .* expected 2"):
        driver.grads(lambda x: bad(x, 1.0), ONES)


# --- the compiler ---------------------------------------------------------------------


def test_compiler_with_keywords_partial_and_object(driver):
    custom_gradient = driver.bf.custom_gradient
    scaled = custom_gradient(_scaled)
    part = custom_gradient(functools.partial(_scaled, power=2))

    class Twice:
        def __call__(self, x, *, k):
            return x * k, lambda g: 2 * g

    twice = custom_gradient(Twice())

    def f(x, bias):  # 3x + bias, x**2 + bias, 5x; the rules: 10g, 10g, 2g
        return scaled(x, 3.0, bias=bias) + part(x, 1.0, bias=bias) + twice(x, k=5.0)

    y, (gx, gbias) = driver.compiled(f, [1.0, 2.0], [0.5, 0.5])
    np.testing.assert_allclose(y, [3.5 + 1.5 + 5.0, 6.5 + 4.5 + 10.0])
    np.testing.assert_array_equal(gx, [22.0, 22.0])
    _assert_no_gradient(driver, gbias, (2,))


def test_wrong_count_under_the_compiler_carries_the_message(driver):
    """The count is checked when the compiler traces the backward (torch's AOT autograd,
    jax.jit, tf.function, PyTensor's graph): a BackflipTypeError (torch: maybe inside
    Dynamo's own error)."""

    @driver.bf.custom_gradient
    def two(x, c):
        return x * c, lambda g: g

    with pytest.raises(driver.compile_errors, match=COUNT_MESSAGE.format(n=1)):
        driver.compiled(lambda x: two(x, 3.0), ONES)
