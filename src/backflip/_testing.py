"""Helpers for backflip's own test suite (private; not part of the API)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["require_all", "require_backend"]


def require_all() -> bool:
    """True when ``BACKFLIP_REQUIRE_ALL=1``: a missing framework must fail, never skip."""
    return os.environ.get("BACKFLIP_REQUIRE_ALL", "") == "1"


def require_backend(module: str) -> ModuleType:
    """Import a framework for a test module, or skip it where it is not installed.

    Under ``BACKFLIP_REQUIRE_ALL=1`` (CI) a missing framework raises ImportError,
    so the suite fails instead of silently skipping a backend.
    """
    import pytest

    if require_all():
        return importlib.import_module(module)
    return pytest.importorskip(module)
