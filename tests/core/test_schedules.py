import itertools
import math

import pytest

from backflip import BackflipValueError
from backflip.schedules import constant, dann_lambda, dann_learning_rate, linear_warmup


def test_dann_lambda_matches_the_paper_formula():
    for p in (0.0, 0.1, 0.25, 0.5, 1.0):
        assert dann_lambda(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0, abs=1e-15)
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert dann_lambda(0.5, gamma=2.0, lambd_max=0.3) == pytest.approx(
        0.3 * (2 / (1 + math.exp(-1.0)) - 1)
    )


def test_dann_lambda_is_monotone_from_zero_towards_lambd_max():
    values = [dann_lambda(i / 100, lambd_max=2.0) for i in range(101)]
    assert all(b > a for a, b in itertools.pairwise(values))
    assert 0.0 == values[0] < values[-1] < 2.0


def test_dann_learning_rate_matches_the_paper_formula():
    assert dann_learning_rate(0.0) == 0.01
    assert dann_learning_rate(1.0) == pytest.approx(0.01 / 11**0.75)
    assert dann_learning_rate(0.3, lr0=0.1, alpha=5.0, beta=0.5) == pytest.approx(0.1 / 2.5**0.5)


def test_constant_and_linear_warmup():
    assert constant(0.3)(0.0) == constant(0.3)(1.0) == 0.3
    ramp = linear_warmup(end=2.0, warmup=0.5, start=1.0)
    assert [ramp(p) for p in (0.0, 0.25, 0.5, 0.9)] == [1.0, 1.5, 2.0, 2.0]


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
@pytest.mark.parametrize("schedule", [dann_lambda, dann_learning_rate, constant(1.0), linear_warmup()])
def test_progress_out_of_range_names_the_value(schedule, p):
    with pytest.raises(BackflipValueError, match=r"progress `p` .* must lie in \[0, 1\]; got"):
        schedule(p)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: dann_lambda(0.5, gamma=float("nan")), r"`gamma` of dann_lambda must be finite; got nan"),
        (lambda: dann_lambda(0.5, lambd_max=float("inf")), r"`lambd_max` .* must be finite; got inf"),
        (lambda: dann_lambda(0.5, lambd_max=-1.0), r"`lambd_max` of dann_lambda must be >= 0; got -1.0"),
        (lambda: dann_learning_rate(0.5, lr0=0.0), r"`lr0` .* must be finite and > 0; got 0.0"),
        (lambda: dann_learning_rate(0.5, alpha=-1.0), r"`alpha` .* must be >= 0; got -1.0"),
        (lambda: dann_learning_rate(0.5, beta=float("nan")), r"`beta` .* must be finite; got nan"),
        (lambda: constant(float("nan")), r"`value` of constant must be finite; got nan"),
        (lambda: linear_warmup(warmup=0.0), r"`warmup` of linear_warmup .* \(0, 1\]; got 0.0"),
    ],
)
def test_bad_parameters_raise_naming_the_value(call, match):
    with pytest.raises(BackflipValueError, match=match):
        call()


def test_bad_type_of_progress():
    with pytest.raises(TypeError, match=r"`p` of dann_lambda must be a real number .* got '0.5'"):
        dann_lambda("0.5")
