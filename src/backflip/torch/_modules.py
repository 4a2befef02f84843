"""``nn.Module`` wrappers of the gradient ops, with λ / factor in registered buffers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from backflip._validate import check_clip_bounds, check_factor, check_lambd, check_progress
from backflip.torch._backend import _apply_scale
from backflip.torch._ops import clip_gradient

__all__ = ["GradientClip", "GradientReversal", "GradientScale"]


class GradientReversal(nn.Module):
    """Gradient reversal layer: identity forward, ``dL/dx = -lambd * dL/dy`` backward.

    ``lambd`` lives in a registered 0-d float32 buffer named ``lambd``: it moves with
    ``.to()``, is saved in ``state_dict`` and survives ``copy.deepcopy`` and pickling.
    :meth:`set_lambd` and :meth:`set_progress` update it in place and validate it there,
    so a ``torch.compile``'d model keeps its graph (no recompilation) when λ changes.
    ``schedule`` is a callable ``p -> lambd`` such as :func:`backflip.schedules.dann_lambda`
    (it must be a module-level function for pickling).

    >>> from backflip.schedules import dann_lambda
    >>> grl = GradientReversal(schedule=dann_lambda)
    >>> grl.set_progress(0.0)
    >>> float(grl.lambd)
    0.0
    """

    lambd: torch.Tensor

    def __init__(
        self, lambd: float = 1.0, schedule: Callable[[float], float] | None = None
    ) -> None:
        super().__init__()
        self.schedule = schedule
        value = check_lambd(
            float(lambd) if isinstance(lambd, torch.Tensor) else lambd, "GradientReversal"
        )
        self.register_buffer("lambd", torch.tensor(value, dtype=torch.float32))

    def set_lambd(self, value: float | torch.Tensor) -> None:
        """Validate ``value`` and write it into the ``lambd`` buffer in place."""
        if isinstance(value, torch.Tensor):
            value = value.item()
        self.lambd.fill_(check_lambd(value, "GradientReversal.set_lambd"))

    def set_progress(self, p: float) -> None:
        """Set λ to ``schedule(p)`` for training progress ``p`` in ``[0, 1]``."""
        p = check_progress(p, "GradientReversal.set_progress")
        if self.schedule is None:
            from backflip._errors import BackflipValueError

            raise BackflipValueError(
                "GradientReversal.set_progress needs a schedule; this layer has none. "
                "Construct it as GradientReversal(schedule=backflip.schedules.dann_lambda) "
                "or call set_lambd(value) instead."
            )
        self.set_lambd(self.schedule(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # λ was validated by the constructor / setters: no per-step host sync here.
        return _apply_scale(x, self.lambd, True, "GradientReversal")

    def extra_repr(self) -> str:
        sched = (
            ""
            if self.schedule is None
            else (f", schedule={getattr(self.schedule, '__name__', repr(self.schedule))}")
        )
        return f"lambd={float(self.lambd):g}{sched}"


class GradientScale(nn.Module):
    """Identity forward, ``dL/dx = factor * dL/dy``; ``factor`` in a 0-d float32 buffer.

    >>> GradientScale(0.5)
    GradientScale(factor=0.5)
    """

    factor: torch.Tensor

    def __init__(self, factor: float) -> None:
        super().__init__()
        value = check_factor(
            float(factor) if isinstance(factor, torch.Tensor) else factor, "GradientScale"
        )
        self.register_buffer("factor", torch.tensor(value, dtype=torch.float32))

    def set_factor(self, value: float | torch.Tensor) -> None:
        """Validate ``value`` and write it into the ``factor`` buffer in place."""
        if isinstance(value, torch.Tensor):
            value = value.item()
        self.factor.fill_(check_factor(value, "GradientScale.set_factor"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_scale(x, self.factor, False, "GradientScale")

    def extra_repr(self) -> str:
        return f"factor={float(self.factor):g}"


class GradientClip(nn.Module):
    """Identity forward, ``dL/dx = clamp(dL/dy, min, max)`` (bounds are plain floats).

    >>> GradientClip(-0.1, 0.1)
    GradientClip(min=-0.1, max=0.1)
    """

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        super().__init__()
        self.min, self.max = check_clip_bounds(min, max, "GradientClip")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return clip_gradient(x, self.min, self.max)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"
