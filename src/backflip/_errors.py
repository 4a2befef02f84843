"""The library's own exception classes.

Every error backflip raises on bad input is a :class:`BackflipError`; the concrete
classes also derive from the built-in they refine, so existing ``except ValueError`` /
``except TypeError`` blocks keep working. A check that fails (``report.verify()``) raises
:class:`OverrideCheckError`, an :class:`AssertionError`.
"""

from __future__ import annotations

__all__ = [
    "BackflipError",
    "BackflipImportError",
    "BackflipTypeError",
    "BackflipValueError",
    "OverrideCheckError",
]


class BackflipError(Exception):
    """Base class of every error raised by backflip.

    >>> from backflip.rules import check_rule
    >>> try:
    ...     check_rule("guidedd")
    ... except BackflipError as err:
    ...     print(type(err).__name__)
    BackflipValueError
    """


class BackflipValueError(BackflipError, ValueError):
    """A value is out of range, non-finite, or otherwise unusable.

    Also a :class:`ValueError`, so ``except ValueError`` catches it:

    >>> from backflip.schedules import dann_lambda
    >>> try:
    ...     dann_lambda(0.5, lambd_max=-1.0)
    ... except ValueError as err:
    ...     print(isinstance(err, BackflipValueError))
    True
    """


class BackflipTypeError(BackflipError, TypeError):
    """An argument has the wrong type or dtype.

    Also a :class:`TypeError`, so ``except TypeError`` catches it:

    >>> from backflip.rules import resolve
    >>> try:
    ...     resolve("relu", "guided", {"alpha": 2.0})
    ... except TypeError as err:
    ...     print(type(err).__name__)
    BackflipTypeError
    """


class BackflipImportError(BackflipError, ModuleNotFoundError):
    """An optional dependency is missing; the message names the extra that installs it.

    A :class:`ModuleNotFoundError` (so an ``ImportError``) whose ``name`` is the missing
    module, so ``except ImportError`` and ``pytest.importorskip`` treat it as one.

    >>> from backflip._optional import require
    >>> try:
    ...     require("no_such_module_xyz")
    ... except ImportError as err:
    ...     print(type(err).__name__, err.name)
    BackflipImportError no_such_module_xyz
    """


class OverrideCheckError(BackflipError, AssertionError):
    """``report.verify()`` found an overridden activation whose gradient breaks the rule.

    Raised the same way by every adapter's ``override_gradients`` report, with a message
    naming the activation, its call sites, the rule, the largest difference from the NumPy
    reference (:func:`backflip.rules.apply_rule`) and what to do. Also an
    :class:`AssertionError`; ``backflip.torch.GradientCheckError`` (a failed
    ``check_gradient``) is a subclass. Here a "framework" whose ReLU gradient ignores the
    guided rule is checked:

    >>> import numpy as np
    >>> from backflip._override_verify import Checker
    >>> def default_gradient(x, activation, rule, params, g):  # dL/dx = g * 1[x > 0]
    ...     return g * (x > 0)
    >>> try:
    ...     Checker("NumPy", default_gradient).check("relu", {}, "guided", ["module 'fc'"])
    ... except AssertionError as err:
    ...     print(type(err).__name__, str(err)[:61])
    OverrideCheckError report.verify(): relu at module 'fc' does not follow the rule
    """
