import pytest

from backflip import BackflipError, BackflipTypeError, BackflipValueError
from backflip._validate import check_clip_bounds, check_factor, check_lambd, check_max_norm


def test_error_classes_refine_the_builtins():
    assert issubclass(BackflipValueError, ValueError) and issubclass(BackflipValueError, BackflipError)
    assert issubclass(BackflipTypeError, TypeError) and issubclass(BackflipTypeError, BackflipError)


def test_good_values_come_back_as_floats():
    assert check_lambd(0) == 0.0 and isinstance(check_lambd(2), float)
    assert check_factor(-2) == -2.0
    assert check_clip_bounds(-1, None) == (-1.0, None)
    assert check_max_norm(3) == 3.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -0.5])
def test_bad_lambd(bad):
    with pytest.raises(BackflipValueError, match=r"`lambd` of reverse_gradient must be finite and >= 0; got"):
        check_lambd(bad)


@pytest.mark.parametrize("bad", [True, "1.0", None, [1.0]])
def test_non_number_lambd(bad):
    with pytest.raises(BackflipTypeError, match=r"`lambd` of reverse_gradient must be a real number"):
        check_lambd(bad)


def test_bad_factor_bounds_and_norm():
    with pytest.raises(BackflipValueError, match=r"`factor` of scale_gradient must be finite; got inf"):
        check_factor(float("inf"))
    with pytest.raises(BackflipValueError, match="needs at least one of `min` and `max`"):
        check_clip_bounds(None, None)
    with pytest.raises(BackflipValueError, match=r"must be <= `max`; got min=1.0, max=-1.0. Swap them"):
        check_clip_bounds(1.0, -1.0)
    with pytest.raises(BackflipValueError, match="`max` of clip_gradient must not be NaN"):
        check_clip_bounds(None, float("nan"))
    with pytest.raises(BackflipValueError, match=r"`max_norm` of clip_gradient_norm must be finite and > 0; got 0.0"):
        check_max_norm(0.0)
