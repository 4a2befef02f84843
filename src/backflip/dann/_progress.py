"""Logs that suit where they go: a live bar on a terminal, one line per epoch elsewhere.

On a terminal (stdout is a TTY) each epoch shows a tqdm bar with the running loss,
accuracy and λ, and leaves one summary line; in a log file, CI or ``nohup`` only the
summary lines are written (no carriage-return updates). Only the main process of a
distributed run logs; ``progress=False`` is silent except for notes, which go to
stderr always.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["Progress", "epoch_line"]


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch's summary line.

    >>> epoch_line({"epoch": 2, "loss": 0.5, "train_acc": 0.9, "target_acc": None,
    ...             "lambd": 0.4, "seconds": 1.25}, 5)
    'epoch 2/5: loss 0.5000, train acc 0.9000, λ 0.400, 1.2 s'
    """
    parts = [f"loss {row['loss']:.4f}", f"train acc {row['train_acc']:.4f}"]
    for key, label in (("domain_acc", "domain acc"), ("target_acc", "target acc"),
                       ("source_val_acc", "source val acc")):
        if row.get(key) is not None:
            parts.append(f"{label} {row[key]:.4f}")
    if row.get("lambd") is not None:  # the method has a λ-weighted term
        parts.append(f"λ {row['lambd']:.3f}")
    return f"epoch {row['epoch']}/{epochs}: " + ", ".join(parts) + f", {row['seconds']:.1f} s"


class Progress:
    """The run's log: ``bar(...)`` per epoch, ``update(...)`` per fold, ``epoch(row)``."""

    def __init__(self, enabled: bool, main: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled and main
        self.main = main
        isatty = getattr(self.stream, "isatty", None)
        self.live = self.enabled and bool(isatty and isatty())
        self._bar = None

    def note(self, text: str) -> None:
        """A notice about the run (e.g. no target accuracy), to stderr on the main process."""
        if self.main:
            print(f"backflip: note: {text}", file=sys.stderr)

    def start_epoch(self, epoch: int, epochs: int, start: int, steps: int,
                    desc: str | None = None) -> None:
        """Open the epoch's bar (on a terminal only)."""
        if self.live:
            from backflip._optional import require

            tqdm = require("tqdm.auto", purpose="the progress bar").tqdm
            self._bar = tqdm(total=steps, initial=start, desc=desc or f"epoch {epoch + 1}/{epochs}",
                             leave=False, file=self.stream)

    def update(self, done: int, **figures: str) -> None:
        """Move the bar to ``done`` steps of the epoch, showing ``figures``."""
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix(**figures)

    def end_epoch(self, row: dict[str, Any] | None, epochs: int) -> None:
        """Close the bar; log the epoch's summary line (a DANN metrics row)."""
        if row is not None:
            self.line(epoch_line(row, epochs))
        elif self._bar is not None:
            self._bar.close()
            self._bar = None

    def line(self, text: str) -> None:
        """Close the bar and log one summary line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled:
            print(text, file=self.stream, flush=True)
