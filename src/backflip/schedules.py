"""Training-progress schedules of Ganin & Lempitsky (2015), and simple kin.

Every schedule maps training progress ``p`` in ``[0, 1]`` (``p = step / total_steps``)
to a number. None imports a framework; the results are plain floats, which the
framework adapters copy into a 0-d tensor buffer (never into a compiled graph).

The two schedules of "Unsupervised Domain Adaptation by Backpropagation"
(Ganin & Lempitsky, ICML 2015, section 5.2) and "Domain-Adversarial Training of
Neural Networks" (Ganin et al., JMLR 2016):

* the adaptation factor ``lambd_p = lambd_max * (2 / (1 + exp(-gamma * p)) - 1)``,
  rising from 0 to almost ``lambd_max`` (gamma = 10), which suppresses the noisy
  domain signal early in training;
* the learning rate ``mu_p = lr0 / (1 + alpha * p) ** beta`` (lr0 = 0.01, alpha = 10,
  beta = 0.75).

>>> round(dann_lambda(0.0), 6), round(dann_lambda(1.0), 6)
(0.0, 0.999909)
>>> round(dann_learning_rate(1.0), 6)
0.001656
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from backflip._errors import BackflipValueError
from backflip._validate import check_progress

__all__ = [
    "Schedule",
    "constant",
    "dann_lambda",
    "dann_learning_rate",
    "linear_warmup",
]

Schedule = Callable[[float], float]
"""A schedule: training progress ``p`` in [0, 1] -> value.

Any callable of one float is a schedule; the ones here also check that ``p`` is in [0, 1].

>>> schedule: Schedule = linear_warmup(end=1.0, warmup=0.5)
>>> [schedule(p) for p in (0.0, 0.25, 1.0)]
[0.0, 0.5, 1.0]
"""


def _finite(value: float, name: str, where: str, positive: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        need = "finite and > 0" if positive else "finite"
        raise BackflipValueError(f"`{name}` of {where} must be {need}; got {value!r}.")
    return value


def dann_lambda(p: float, gamma: float = 10.0, lambd_max: float = 1.0) -> float:
    """The paper's adaptation factor: ``lambd_max * (2 / (1 + exp(-gamma * p)) - 1)``.

    Args:
        p: training progress in [0, 1].
        gamma: steepness (the paper's 10).
        lambd_max: the value approached at ``p = 1``; finite and >= 0.

    Returns:
        λ in ``[0, lambd_max)``.

    >>> round(dann_lambda(0.5), 4)
    0.9866
    """
    p = check_progress(p, "dann_lambda")
    gamma = _finite(gamma, "gamma", "dann_lambda")
    lambd_max = _finite(lambd_max, "lambd_max", "dann_lambda")
    if lambd_max < 0:
        raise BackflipValueError(
            f"`lambd_max` of dann_lambda must be >= 0; got {lambd_max!r}. "
            "The reversal already supplies the minus sign."
        )
    return lambd_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def dann_learning_rate(
    p: float, lr0: float = 0.01, alpha: float = 10.0, beta: float = 0.75
) -> float:
    """The paper's annealed learning rate: ``lr0 / (1 + alpha * p) ** beta``.

    >>> dann_learning_rate(0.0)
    0.01
    """
    p = check_progress(p, "dann_learning_rate")
    lr0 = _finite(lr0, "lr0", "dann_learning_rate", positive=True)
    alpha = _finite(alpha, "alpha", "dann_learning_rate")
    beta = _finite(beta, "beta", "dann_learning_rate")
    if alpha < 0:
        raise BackflipValueError(f"`alpha` of dann_learning_rate must be >= 0; got {alpha!r}.")
    return lr0 / (1.0 + alpha * p) ** beta


@dataclass(frozen=True)
class constant:
    """A schedule that always returns ``value``.

    >>> constant(0.3)(0.7)
    0.3
    """

    value: float

    def __post_init__(self) -> None:
        _finite(self.value, "value", "constant")

    def __call__(self, p: float) -> float:
        check_progress(p, "constant")
        return float(self.value)


@dataclass(frozen=True)
class linear_warmup:
    """Rise linearly from ``start`` to ``end`` over the first ``warmup`` of training, then hold.

    ``value(p) = start + (end - start) * min(p / warmup, 1)``

    >>> linear_warmup(end=1.0, warmup=0.5)(0.25)
    0.5
    """

    end: float = 1.0
    warmup: float = 0.1
    start: float = 0.0

    def __post_init__(self) -> None:
        _finite(self.start, "start", "linear_warmup")
        _finite(self.end, "end", "linear_warmup")
        w = _finite(self.warmup, "warmup", "linear_warmup")
        if not 0.0 < w <= 1.0:
            raise BackflipValueError(
                f"`warmup` of linear_warmup is a fraction of training in (0, 1]; got {w!r}."
            )

    def __call__(self, p: float) -> float:
        p = check_progress(p, "linear_warmup")
        return self.start + (self.end - self.start) * min(p / self.warmup, 1.0)
