"""A Keras callback that applies the DANN λ schedule during ``fit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from backflip._errors import BackflipValueError
from backflip.keras._layers import GradientReversal
from backflip.schedules import dann_lambda

__all__ = ["DANNLambdaScheduler"]


class DANNLambdaScheduler(keras.callbacks.Callback):
    """Set λ of GradientReversal layers by training progress before every batch.

    ``lambd = dann_lambda(p, gamma, lambd_max)`` with ``p = step / total_steps``
    (Ganin & Lempitsky 2015, section 5.2; see :mod:`backflip.schedules`).

    Args:
        total_steps: training steps over which ``p`` goes from 0 to 1; default
            ``epochs * steps_per_epoch`` of the ``fit`` call.
        gamma: the schedule's steepness (the paper's 10).
        lambd_max: the λ approached at the end of training.
        layers: the layers to drive; default every GradientReversal in the model.

    Attributes:
        lambd_: the λ set before the latest batch.

    >>> scheduler = DANNLambdaScheduler(total_steps=100)
    >>> scheduler.gamma, scheduler.lambd_max
    (10.0, 1.0)
    """

    def __init__(
        self,
        total_steps: int | None = None,
        gamma: float = 10.0,
        lambd_max: float = 1.0,
        layers: Sequence[GradientReversal] | None = None,
    ) -> None:
        super().__init__()
        if total_steps is not None and (isinstance(total_steps, bool) or int(total_steps) < 1):
            raise BackflipValueError(
                f"`total_steps` of DANNLambdaScheduler must be a positive integer; "
                f"got {total_steps!r}."
            )
        dann_lambda(0.0, gamma, lambd_max)  # checks gamma and lambd_max
        self.total_steps = total_steps
        self.gamma = float(gamma)
        self.lambd_max = float(lambd_max)
        self.layers = None if layers is None else list(layers)
        self.lambd_: float | None = None
        self._step = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._step = 0
        if self.total_steps is None:
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            if not epochs or not steps:
                raise BackflipValueError(
                    "DANNLambdaScheduler cannot tell the number of training steps "
                    f"(fit reported epochs={epochs!r}, steps={steps!r}); pass "
                    "total_steps=epochs * steps_per_epoch."
                )
            self._total = int(epochs) * int(steps)
        else:
            self._total = int(self.total_steps)
        if self.layers is None:
            found = [la for la in self.model._flatten_layers() if isinstance(la, GradientReversal)]
            if not found:
                raise BackflipValueError(
                    "DANNLambdaScheduler found no GradientReversal layer in the model; "
                    "add one or pass layers=[...]."
                )
            self._targets = found
        else:
            self._targets = self.layers

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        p = min(self._step / self._total, 1.0)
        self.lambd_ = dann_lambda(p, self.gamma, self.lambd_max)
        _ = self.model  # under JAX, reading .model syncs the train state into the variables
        for layer in self._targets:
            layer.lambd.assign(self.lambd_)
        self._step += 1
