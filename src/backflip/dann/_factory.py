"""``--model MODULE:FUNCTION``: build the user's network from their own importable code.

The convention is uvicorn's ``app:main``: ``MODULE`` is imported (the current folder is
searched first, as ``python -m`` does) and ``FUNCTION`` is called. It may take no
arguments, or any of ``in_shape`` (the sample shape, e.g. ``(3, 28, 28)``) and
``num_classes`` by name, and must return the model to train (a
:class:`backflip.dann.DANN`)::

    # mynets.py
    def build(in_shape, num_classes):
        f = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), 64), nn.ReLU())
        return DANN(f, nn.Linear(64, num_classes), nn.Linear(64, 1))

    backflip train --model mynets:build --source train.npz --target unlabelled.npy
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from backflip._errors import BackflipValueError

__all__ = ["build_from_factory", "import_factory", "model_class"]


def import_factory(spec: str) -> Callable[..., Any]:
    """The function ``spec = "MODULE:FUNCTION"`` names, with clear errors.

    >>> import_factory("backflip.dann._models:build_model").__name__
    'build_model'
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise BackflipValueError(
            f"model must be 'MODULE:FUNCTION' (CLI: --model mynets:build); got {spec!r}."
        )
    module_name, func_name = spec.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path:  # the console script does not put it there; python -m does
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise BackflipValueError(
                f"model {spec!r}: no module named {module_name!r} on the Python path (the "
                f"current folder {cwd!r} included). Run from the folder holding "
                f"{module_name.replace('.', '/')}.py, or add its folder to PYTHONPATH."
            ) from None
        raise
    func = getattr(module, func_name, None)
    if not callable(func):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise BackflipValueError(
            f"model {spec!r}: module {module_name!r} has no function {func_name!r}; its "
            f"callables are {', '.join(names) or 'none'}."
        )
    return func


def build_from_factory(spec: str, in_shape: tuple[int, ...], num_classes: int) -> Any:
    """Import ``spec`` and call it with the ``in_shape`` / ``num_classes`` it accepts.

    ``auto_arch(in_shape)`` takes no ``num_classes``, so only ``in_shape`` is passed:

    >>> build_from_factory("backflip.dann._models:auto_arch", (3, 28, 28), num_classes=10)
    'mnist'
    """
    func = import_factory(spec)
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    offered = {"in_shape": tuple(in_shape), "num_classes": int(num_classes)}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    return func(**kwargs)


def model_class(model: Any) -> str:
    """``"module.QualName"`` of a model's class (recorded in config.json and checkpoints)."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"
