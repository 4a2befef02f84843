"""The conformance table: one list of cases that every framework backend must pass.

Each :class:`Case` names an op, its parameters, an input shape and dtype; its inputs
``x`` and upstream gradient ``g`` are drawn from a seeded NumPy generator, and its
expected output ``y`` and input gradient ``dx`` are computed here in NumPy
(:mod:`backflip.rules`). A backend's test runs every case through its own API and
compares with :meth:`Case.expected` at :meth:`Case.tolerance`.

Ops (``x`` input, ``g`` upstream gradient; see :mod:`backflip.rules`):

* ``reverse`` / ``scale`` / ``clip`` / ``clip_norm``: ``y = x``, ``dx`` by the rule.
* ``custom``: a user ``custom_gradient`` with forward ``y = x**3`` and the
  deliberately non-default backward ``dx = g * x`` (the true derivative is ``3x²g``).
* ``relu_guided`` / ``relu_deconvnet``: ``y = relu(x)``, ``dx`` by the ReLU rule.
* ``reverse_double``: the second derivative through a reversal. With
  ``h(x) = sum(reverse(x, lambd)**3) / 3``, a backend computes the gradient of
  ``sum(g * h'(x))`` w.r.t. ``x`` (a Hessian-vector product); expected
  ``dx = lambd**2 * 2 * x * g`` and ``y = x``.
* ``override``: the rule ``params["rule"]`` (``vanilla``, ``guided``, ``deconvnet``, or
  ``user``: :func:`user_rule`, ``dx = g * y``) applied through a backend's
  ``override_gradients`` to :func:`mlp`, the fixed ReLU network
  ``y = relu(relu(x @ W1 + b1) @ W2 + b2)`` (4 -> 5 -> 3, float64 weights
  :data:`MLP_WEIGHTS`, the same in every framework); ``x`` is a 2x4 batch, ``g`` the
  2x3 upstream gradient of ``y``, and ``dx`` is computed layer by layer in NumPy
  (:func:`mlp_backward`).

>>> case = CASES[0]
>>> y, dx = case.expected()
>>> bool((dx == -case.params["lambd"] * case.inputs()[1]).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backflip import rules

__all__ = [
    "CASES", "MLP_WEIGHTS", "Case", "case_ids", "mlp", "mlp_backward", "op_reference", "user_rule",
]

_TOL = {"float16": 1e-3, "bfloat16": 1e-2, "float32": 1e-6, "float64": 1e-12}
_OVERRIDE_TOL = {"float32": 1e-5, "float64": 1e-6}  # a network: matmuls in each framework's order


def _mlp_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(15)
    w1, b1 = rng.standard_normal((4, 5)), 0.5 * rng.standard_normal(5)
    w2, b2 = rng.standard_normal((5, 3)), 0.5 * rng.standard_normal(3)
    return w1, b1, w2, b2


MLP_WEIGHTS: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = _mlp_weights()
"""``(W1, b1, W2, b2)`` of :func:`mlp`, float64, shapes 4x5, 5, 5x3, 3 (``x @ W``)."""


def mlp(x: np.ndarray) -> np.ndarray:
    """The override cases' network in NumPy: ``relu(relu(x @ W1 + b1) @ W2 + b2)``.

    >>> mlp(np.zeros((2, 4))).shape  # a batch of 2 inputs of 4 -> 2 outputs of 3
    (2, 3)
    """
    w1, b1, w2, b2 = MLP_WEIGHTS
    return np.maximum(np.maximum(x @ w1 + b1, 0.0) @ w2 + b2, 0.0)


def user_rule(x, y, g):
    """The override cases' user rule ``fn(x, y, g) -> dL/dx``: ``g * y`` (any framework's arrays).

    That is ``dL/dx = dL/dy * y`` at each nonlinearity, ignoring ``x``:

    >>> user_rule(np.array([1.0, -1.0]), np.array([2.0, 0.0]), np.array([3.0, 3.0]))
    array([6., 0.])
    """
    return g * y


def mlp_backward(rule, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``dL/dx`` of :func:`mlp` with ``rule`` at both ReLUs, upstream ``g``, by hand in NumPy.

    With ``a1 = x @ W1 + b1`` and ``a2 = relu(a1) @ W2 + b2``:
    ``da2 = rule(a2, g)``, ``da1 = rule(a1, da2 @ W2.T)``, ``dL/dx = da1 @ W1.T``, where
    ``rule(a, g)`` is :func:`backflip.rules.apply_rule` for ReLU (``"vanilla"``:
    ``g * 1[a > 0]``, the true gradient).

    >>> x, g = np.ones((1, 4)), -np.ones((1, 3))
    >>> bool((mlp_backward("guided", x, g) == 0).all())  # guided drops negative g
    True
    """
    w1, b1, w2, b2 = MLP_WEIGHTS
    a1 = x @ w1 + b1
    a2 = np.maximum(a1, 0.0) @ w2 + b2
    da2 = rules.apply_rule(rule, "relu", a2, g)
    da1 = rules.apply_rule(rule, "relu", a1, da2 @ w2.T)
    return da1 @ w1.T


_OP_REFERENCES = ("reverse", "scale", "clip", "clip_norm", "relu_guided", "relu_deconvnet")


def op_reference(op: str, params: dict, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, dL/dx)`` of one of the gradient ops in NumPy, from :mod:`backflip.rules`.

    ``op`` is ``reverse``, ``scale``, ``clip``, ``clip_norm``, ``relu_guided`` or
    ``relu_deconvnet``; ``params`` as in :data:`CASES` (``lambd``, ``factor``, ``min`` /
    ``max``, ``max_norm``). The conformance table and the property tests both use it.

    >>> op_reference("reverse", {"lambd": 0.5}, np.ones(2), np.array([1.0, -2.0]))[1]
    array([-0.5,  1. ])
    """
    if op == "reverse":
        return x, rules.reverse_backward(g, params["lambd"])
    if op == "scale":
        return x, rules.scale_backward(g, params["factor"])
    if op == "clip":
        return x, rules.clip_backward(g, params.get("min"), params.get("max"))
    if op == "clip_norm":
        return x, rules.clip_norm_backward(g, params["max_norm"])
    if op in ("relu_guided", "relu_deconvnet"):
        return np.maximum(x, 0.0), rules.apply_rule(op.removeprefix("relu_"), "relu", x, g)
    raise ValueError(f"unknown op {op!r}; use one of {', '.join(_OP_REFERENCES)}")


@dataclass(frozen=True)
class Case:
    """One row of the conformance table.

    >>> case = Case("scale-minus2", "scale", {"factor": -2.0})
    >>> x, g = case.inputs()
    >>> y, dx = case.expected()  # y = x, dL/dx = factor * dL/dy
    >>> bool((y == x).all() and (dx == -2.0 * g).all()), case.tolerance()
    (True, 1e-06)
    """

    id: str
    op: str
    params: dict[str, float | str | None] = field(default_factory=dict)
    shape: tuple[int, ...] = (3, 4)
    dtype: str = "float32"
    seed: int = 0

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The input ``x`` and the upstream gradient ``g``, reproducible from ``seed``."""
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal(self.shape).astype(self.dtype)
        out_shape = (*self.shape[:-1], 3) if self.op == "override" else self.shape
        g = rng.standard_normal(out_shape).astype(self.dtype)
        if self.op == "clip_norm":  # make the clipping bite
            g = (g * 10).astype(self.dtype)
        return x, g

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y, dx)`` computed in NumPy (float64, cast back to ``dtype``)."""
        x, g = self.inputs()
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        p = self.params
        y = x64
        if self.op in _OP_REFERENCES:
            y, dx = op_reference(self.op, p, x64, g64)
        elif self.op == "custom":
            y, dx = x64**3, g64 * x64
        elif self.op == "reverse_double":
            dx = p["lambd"] ** 2 * 2.0 * x64 * g64
        elif self.op == "override":
            y, dx = mlp(x64), mlp_backward(self.rule(), x64, g64)
        else:  # pragma: no cover - a typo in the table itself
            raise ValueError(f"unknown conformance op {self.op!r}")
        return y.astype(self.dtype), np.asarray(dx).astype(self.dtype)

    def rule(self):
        """The rule of an ``override`` case: its name, or :func:`user_rule` for ``"user"``."""
        return user_rule if self.params["rule"] == "user" else self.params["rule"]

    def tolerance(self) -> float:
        """Relative/absolute tolerance for comparing a backend's result."""
        return (_OVERRIDE_TOL if self.op == "override" else _TOL)[self.dtype]


CASES: list[Case] = [
    Case("reverse-lambd0", "reverse", {"lambd": 0.0}),
    Case("reverse-lambd0.5", "reverse", {"lambd": 0.5}),
    Case("reverse-lambd1", "reverse", {"lambd": 1.0}),
    Case("reverse-lambd3", "reverse", {"lambd": 3.0}),
    Case("reverse-lambd1-f64", "reverse", {"lambd": 1.0}, dtype="float64", seed=1),
    Case("reverse-lambd1-3d", "reverse", {"lambd": 1.0}, shape=(2, 3, 5), seed=2),
    Case("scale-minus2", "scale", {"factor": -2.0}),
    Case("scale-0.5", "scale", {"factor": 0.5}),
    Case("clip-0.1", "clip", {"min": -0.1, "max": 0.1}),
    Case("clip-max-only", "clip", {"min": None, "max": 0.2}, seed=3),
    Case("clip_norm-1", "clip_norm", {"max_norm": 1.0}),
    Case("custom-x3", "custom", {}),
    Case("relu-guided", "relu_guided", {}, shape=(4, 6), seed=4),
    Case("relu-deconvnet", "relu_deconvnet", {}, shape=(4, 6), seed=4),
    Case("reverse-double-lambd0.5", "reverse_double", {"lambd": 0.5}, dtype="float64"),
    Case("reverse-double-lambd2", "reverse_double", {"lambd": 2.0}, dtype="float64"),
    Case("override-vanilla", "override", {"rule": "vanilla"}, (2, 4), "float64", seed=8),
    Case("override-guided", "override", {"rule": "guided"}, (2, 4), "float64", seed=8),
    Case("override-deconvnet", "override", {"rule": "deconvnet"}, (2, 4), "float64", seed=8),
    Case("override-user", "override", {"rule": "user"}, (2, 4), "float64", seed=8),
]
"""Every case every backend runs. Add a row here and every backend must pass it."""


def case_ids() -> list[str]:
    """The ids of :data:`CASES`, for ``pytest.mark.parametrize(ids=...)``.

    >>> case_ids()[:3]
    ['reverse-lambd0', 'reverse-lambd0.5', 'reverse-lambd1']
    """
    return [c.id for c in CASES]
