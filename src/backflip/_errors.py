"""The library's own exception classes.

Every error backflip raises on bad input is a :class:`BackflipError`; the two
concrete classes also derive from the built-in they refine, so existing
``except ValueError`` / ``except TypeError`` blocks keep working.
"""

from __future__ import annotations

__all__ = ["BackflipError", "BackflipImportError", "BackflipTypeError", "BackflipValueError"]


class BackflipError(Exception):
    """Base class of every error raised by backflip."""


class BackflipValueError(BackflipError, ValueError):
    """A value is out of range, non-finite, or otherwise unusable."""


class BackflipTypeError(BackflipError, TypeError):
    """An argument has the wrong type or dtype."""


class BackflipImportError(BackflipError, ModuleNotFoundError):
    """An optional dependency is missing; the message names the extra that installs it.

    A :class:`ModuleNotFoundError` (so an ``ImportError``) whose ``name`` is the missing
    module, so ``except ImportError`` and ``pytest.importorskip`` treat it as one.
    """
