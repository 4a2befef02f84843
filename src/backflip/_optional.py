"""Optional dependencies: one clear error naming the extra to install, at the point of use.

>>> require("no_such_module_xyz", extra="apps", purpose="this feature")
Traceback (most recent call last):
backflip._errors.BackflipImportError: this feature needs the package 'no_such_module_xyz', which is not installed. Install it with: pip install "backflip[apps]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

from backflip._errors import BackflipImportError

__all__ = ["APPS", "PACKAGES", "missing", "require"]

#: import name -> (the name pip knows it by, the extra that brings it)
PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "sklearn": ("scikit-learn", "apps"),
    "skimage": ("scikit-image", "apps"),
    "PIL": ("pillow", "apps"),
    "matplotlib": ("matplotlib", "apps"),
    "tqdm": ("tqdm", "apps"),
    "jax": ("jax", "jax"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "keras": ("keras", "keras"),
    "pytensor": ("pytensor", "pytensor"),
    "optuna": ("optuna", "tune"),
    "sqlalchemy": ("sqlalchemy", "tune"),  # optuna's database storage
}
#: The import names of everything the ``apps`` extra brings (torch, the slowest, last).
APPS = (*(name for name, (_, extra) in PACKAGES.items() if extra == "apps"), "torch")


def missing(module: str, extra: str | None = None, purpose: str | None = None
            ) -> BackflipImportError:
    """The error for a missing ``module``: its pip name and the extra that installs it."""
    top = module.split(".")[0]
    pip_name, default_extra = PACKAGES.get(top, (top, None))
    extra = extra or default_extra
    how = f'pip install "backflip[{extra}]"' if extra else f"pip install {pip_name}"
    return BackflipImportError(
        f"{purpose or 'backflip'} needs the package {pip_name!r}, which is not "
        f"installed. Install it with: {how}",
        name=top,
    )


def require(module: str, extra: str | None = None, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"sklearn"`` or ``"matplotlib.pyplot"``), or raise one clear error.

    The error is a :class:`~backflip.BackflipImportError` (an ``ImportError``) that names
    the package and the ``pip install "backflip[EXTRA]"`` that brings it; ``extra``
    defaults to the one :data:`PACKAGES` lists for the top-level module. A module that
    is installed but fails on one of *its* imports re-raises that error unchanged.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the module is there but one of ITS imports is missing: not ours to hide
        raise missing(module, extra, purpose) from None
