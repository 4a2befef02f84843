"""Gradient rules, defined once, with NumPy references for every backend to match.

Notation: ``x`` is an op's input, ``y`` its output, ``g = dL/dy`` the upstream
gradient (cotangent) and ``dL/dx`` what the op's backward returns.

Identity-forward ops (``y = x``):

=================  ==========================================================
op                 backward ``dL/dx``
=================  ==========================================================
reverse            ``-lambd * g``  (Ganin & Lempitsky 2015; ``lambd >= 0``)
scale              ``factor * g``
clip               ``clip(g, min, max)`` elementwise (``tf.clip_by_value`` on g)
clip_norm          ``g * min(1, max_norm / ||g||_2)`` over the whole tensor
=================  ==========================================================

Double backward: every backward above is linear in ``g``; differentiating it again
applies the same rule once more. A second derivative through a reversal therefore
picks up ``(-lambd) * (-lambd) = lambd**2``: for ``h(x) = sum(reverse(x)**3)``,
``h'(x) = -3 * lambd * x**2`` and ``h''(x) = 6 * lambd**2 * x``.

Nonlinearity rules (``y = act(x)``; ``act'`` is the activation's derivative):

=========  =================================================================
rule       backward ``dL/dx``
=========  =================================================================
vanilla    ``g * act'(x)`` (the default derivative)
guided     ``g * act'(x) * 1[g > 0]`` (Springenberg et al. 2015); for ReLU
           this is ``g * 1[x > 0] * 1[g > 0]``
deconvnet  ``g * 1[g > 0]`` for every activation (Zeiler & Fergus 2014): the
           backward ignores the forward input and passes the positive part
           of the upstream gradient
user rule  any ``fn(x, y, g) -> dL/dx``
=========  =================================================================

``ACTIVATIONS`` lists what the rules cover, with NumPy forward and derivative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backflip._errors import BackflipTypeError, BackflipValueError

__all__ = [
    "ACTIVATIONS",
    "RULES",
    "Activation",
    "apply_rule",
    "check_rule",
    "clip_backward",
    "clip_norm_backward",
    "get_activation",
    "resolve",
    "reverse_backward",
    "scale_backward",
]


def reverse_backward(g: np.ndarray, lambd: float) -> np.ndarray:
    """Gradient reversal: ``dL/dx = -lambd * dL/dy`` (``g = dL/dy``; forward ``y = x``).

    >>> reverse_backward(np.array([1.0, -2.0]), 0.5)
    array([-0.5,  1. ])
    """
    return (-lambd * g).astype(g.dtype)


def scale_backward(g: np.ndarray, factor: float) -> np.ndarray:
    """Gradient scaling: ``dL/dx = factor * dL/dy`` (``g = dL/dy``; forward ``y = x``).

    >>> scale_backward(np.array([1.0, -2.0]), 3.0)
    array([ 3., -6.])
    """
    return (factor * g).astype(g.dtype)


def clip_backward(g: np.ndarray, min: float | None, max: float | None) -> np.ndarray:
    """Gradient clipping: ``dL/dx = clip(dL/dy, min, max)`` elementwise (forward ``y = x``).

    Either bound may be ``None`` (no bound on that side).

    >>> clip_backward(np.array([-3.0, 0.5, 3.0]), -1.0, 1.0)
    array([-1. ,  0.5,  1. ])
    """
    return np.clip(g, min, max).astype(g.dtype)


def clip_norm_backward(g: np.ndarray, max_norm: float) -> np.ndarray:
    """Norm clipping: ``dL/dx = g * min(1, max_norm / ||g||_2)``, ``g = dL/dy``.

    ``||g||_2`` is the L2 norm of the whole tensor; a zero ``g`` passes unchanged.

    >>> clip_norm_backward(np.array([3.0, 4.0]), 1.0)  # ||g|| = 5
    array([0.6, 0.8])
    """
    norm = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return (g * scale).astype(g.dtype)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


_K, _C = math.sqrt(2.0 / math.pi), 0.044715  # the tanh approximation's constants


def _gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_K * (x + _C * x**3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _gelu_grad(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        t = np.tanh(_K * (x + _C * x**3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K * (1.0 + 3 * _C * x * x)
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Activation:
    """A nonlinearity the rules cover: NumPy forward and derivative (float64).

    ``params`` holds the default keyword parameters (e.g. LeakyReLU's slope). The
    vanilla rule's backward is ``dL/dx = dL/dy * derivative(x)``.

    >>> act = ACTIVATIONS["leaky_relu"]
    >>> act.forward(np.array([-2.0, 3.0])), act.derivative(np.array([-2.0, 3.0])), act.params
    (array([-0.02,  3.  ]), array([0.01, 1.  ]), {'negative_slope': 0.01})
    """

    name: str
    forward: Callable[..., np.ndarray]
    derivative: Callable[..., np.ndarray]
    params: dict[str, float] = field(default_factory=dict)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("relu", lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
        Activation(
            "leaky_relu",
            lambda x, negative_slope=0.01: np.where(x > 0, x, negative_slope * x),
            lambda x, negative_slope=0.01: np.where(x > 0, 1.0, negative_slope),
            {"negative_slope": 0.01},
        ),
        Activation(
            "elu",
            lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
            lambda x, alpha=1.0: np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))),
            {"alpha": 1.0},
        ),
        Activation("gelu", _gelu, _gelu_grad, {"approximate": "none"}),
        Activation(
            "silu",
            lambda x: x * _sigmoid(x),
            lambda x: _sigmoid(x) * (1.0 + x * (1.0 - _sigmoid(x))),
        ),
        Activation(
            "softplus",
            lambda x, beta=1.0: np.logaddexp(0.0, beta * x) / beta,
            lambda x, beta=1.0: _sigmoid(beta * x),
            {"beta": 1.0},
        ),
    ]
}

RULES = ("vanilla", "guided", "deconvnet")
"""The built-in nonlinearity rules; a user rule is any ``fn(x, y, g)``."""


def get_activation(name: str) -> Activation:
    """Return the :class:`Activation` called ``name`` or raise naming the valid ones.

    >>> get_activation("relu").derivative(np.array([-1.0, 2.0]))
    array([0., 1.])
    >>> get_activation("tanh")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: no gradient rule covers the activation 'tanh'; ...
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise BackflipValueError(
            f"no gradient rule covers the activation {name!r}; covered: "
            f"{', '.join(ACTIVATIONS)}. Write a user rule fn(x, y, g) for it."
        ) from None


def check_rule(rule: object) -> None:
    """Raise unless ``rule`` is one of :data:`RULES` or a callable ``fn(x, y, g)``.

    >>> check_rule("guided")  # valid: returns None
    >>> check_rule(lambda x, y, g: g * y)
    >>> check_rule("guidedd")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: unknown gradient rule 'guidedd'; use one of ...
    """
    if not callable(rule) and not (isinstance(rule, str) and rule in RULES):
        raise BackflipValueError(
            f"unknown gradient rule {rule!r}; use one of {', '.join(RULES)} "
            "or a function fn(x, y, g) -> dL/dx."
        )


def resolve(
    activation: str, rule: object, params: dict, defaults: dict | None = None
) -> dict:
    """Check an adapter's ``activation_with_rule`` arguments; return the full parameters.

    ``defaults`` are the parameters the adapter's activation takes (the core's
    :attr:`Activation.params` when omitted; an adapter may accept more, such as
    PyTorch's ``approximate`` for GELU). Every adapter calls this, so all raise the
    same errors.

    >>> resolve("leaky_relu", "guided", {})
    {'negative_slope': 0.01}
    """
    act = get_activation(activation)
    check_rule(rule)
    defaults = act.params if defaults is None else defaults
    unknown = set(params) - set(defaults)
    if unknown:
        raise BackflipTypeError(
            f"activation {activation!r} takes the parameters {sorted(defaults) or 'none'}; "
            f"got unexpected {sorted(unknown)}."
        )
    return {**defaults, **params}


def apply_rule(
    rule: str | Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    activation: str,
    x: np.ndarray,
    g: np.ndarray,
    **params: float,
) -> np.ndarray:
    """NumPy reference: ``dL/dx`` of ``rule`` for ``activation`` at input ``x``, upstream ``g``.

    >>> apply_rule("guided", "relu", np.array([1.0, 1.0, -1.0]), np.array([2.0, -2.0, 2.0]))
    array([2., 0., 0.])
    """
    act = get_activation(activation)
    kw = {**act.params, **params}
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    if callable(rule):
        out = rule(x64, act.forward(x64, **kw), g64)
    elif rule == "vanilla":
        out = g64 * act.derivative(x64, **kw)
    elif rule == "guided":
        out = np.where(g64 > 0, g64 * act.derivative(x64, **kw), 0.0)
    elif rule == "deconvnet":
        out = np.where(g64 > 0, g64, 0.0)
    else:
        raise BackflipValueError(
            f"unknown gradient rule {rule!r}; use one of {', '.join(RULES)} "
            "or a function fn(x, y, g) -> dL/dx."
        )
    return np.asarray(out).astype(np.asarray(g).dtype)
