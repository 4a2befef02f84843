"""The training methods, one objective function each: a batch in, the loss terms out.

An objective takes the step's context (the model, the config) and a :class:`Batch`
of source and target samples and returns a :class:`StepOutput`; the loop does the
rest (schedule, backward, step, metrics) the same for every method. A new method of
the GRL family is a new objective here (and its head in the model), not a new branch
in the loop.

* ``source-only``: ``L_y`` on the source batch;
* ``target-only``: ``L_y`` on the labelled target batch (the upper bound);
* ``dann``: ``L_y + L_d`` over one feature pass of [source; target] (``L_d`` reaches
  the features through the GRL, times ``-λ``), plus ``w_ent * H`` (target entropy)
  and ``w_vat * L_vat`` (target VAT) where their weights are set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from backflip.dann._config import TrainConfig
from backflip.dann._losses import domain_loss, entropy_loss, label_loss
from backflip.dann._vat import vat_loss

__all__ = ["OBJECTIVES", "SUMS", "Batch", "StepContext", "StepOutput"]

#: The per-step sums the loop keeps on the device, in this order (see StepOutput.sums).
SUMS = ("loss", "loss_y", "loss_d", "loss_ent", "loss_vat", "correct", "d_correct")


@dataclass
class Batch:
    """This process's share of one step: source samples and labels, target samples."""

    xs: torch.Tensor
    ys: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor | None
    step: int  # the global step (epoch * steps + step): seeds the step's VAT directions


@dataclass
class StepContext:
    """What an objective may use besides the batch."""

    model: torch.nn.Module  # what to call: the model, maybe under DDP and torch.compile
    raw: torch.nn.Module  # the model itself (VAT's extra passes)
    config: TrainConfig
    noise: Callable[[int, tuple[int, ...]], torch.Tensor]  # (step, shape) -> VAT directions


@dataclass
class StepOutput:
    """The loss to minimise and its parts (0-d tensors), with what the metrics need."""

    loss: torch.Tensor
    loss_y: torch.Tensor
    loss_d: torch.Tensor
    loss_ent: torch.Tensor
    loss_vat: torch.Tensor
    logits: torch.Tensor  # class logits of the samples the label loss saw
    labels: torch.Tensor
    d_correct: torch.Tensor  # right domain guesses / 2 (a rate over n after dividing)

    def sums(self) -> torch.Tensor:
        """The step's contribution to :data:`SUMS` (mean terms times the batch size)."""
        n = len(self.labels)
        terms = (self.loss, self.loss_y, self.loss_d, self.loss_ent, self.loss_vat)
        return torch.stack([*(t.detach().float() * n for t in terms),
                            (self.logits.argmax(1) == self.labels).sum().float(),
                            self.d_correct.detach().float()]).double()


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), device=like.device)


def source_only(ctx: StepContext, b: Batch) -> StepOutput:
    """``L_y`` of the source batch."""
    logits = ctx.model(b.xs)
    loss = label_loss(logits, b.ys)
    zero = _zero(loss)
    return StepOutput(loss, loss, zero, zero, zero, logits, b.ys, zero)


def target_only(ctx: StepContext, b: Batch) -> StepOutput:
    """``L_y`` of the labelled target batch (the upper bound a method can approach)."""
    logits = ctx.model(b.xt)
    loss = label_loss(logits, b.yt)
    zero = _zero(loss)
    return StepOutput(loss, loss, zero, zero, zero, logits, b.yt, zero)


def dann(ctx: StepContext, b: Batch) -> StepOutput:
    """``L_y + L_d (+ w_ent H + w_vat L_vat)`` over one feature pass of [source; target]."""
    cfg, n = ctx.config, len(b.xs)
    both, dom = ctx.model(torch.cat([b.xs, b.xt]), with_domain=True)
    loss_y = label_loss(both[:n], b.ys)
    loss_d, d_correct = domain_loss(dom.reshape(-1), n)
    zero = _zero(loss_y)
    loss_ent = entropy_loss(both[n:]) if cfg.target_entropy else zero
    loss_vat = (vat_loss(ctx.raw, b.xt, ctx.noise(b.step, tuple(b.xt.shape[1:])), cfg.vat_eps)
                if cfg.target_vat else zero)
    loss = loss_y + loss_d + cfg.target_entropy * loss_ent + cfg.target_vat * loss_vat
    return StepOutput(loss, loss_y, loss_d, loss_ent, loss_vat, both[:n], b.ys, d_correct / 2)


#: method name -> objective
OBJECTIVES: dict[str, Callable[[StepContext, Batch], StepOutput]] = {
    "source-only": source_only, "dann": dann, "target-only": target_only}
