"""backflip: custom backward passes for deep learning.

``import backflip`` imports no framework. The gradient ops live in one adapter
package per framework, with the same names in each:

* ``backflip.torch`` (the reference), ``backflip.jax``, ``backflip.tensorflow``,
  ``backflip.keras``, ``backflip.pytensor``.

Framework-neutral pieces: :mod:`backflip.schedules` (the DANN λ and learning-rate
schedules), :mod:`backflip.rules` (the gradient rules with NumPy references) and
:mod:`backflip.conformance` (the cases every backend must pass).
"""

from backflip._errors import (
    BackflipError,
    BackflipImportError,
    BackflipTypeError,
    BackflipValueError,
    OverrideCheckError,
)

__version__ = "0.1.0"
__all__ = [
    "BackflipError",
    "BackflipImportError",
    "BackflipTypeError",
    "BackflipValueError",
    "OverrideCheckError",
    "__version__",
]
