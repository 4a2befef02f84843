"""``Adapted``: the module the loop trains (the user's model, the method's heads and loss).

One ``forward`` call holds a whole step's forward pass, so DistributedDataParallel and
``torch.compile`` wrap it as one module, whatever the method:

``loss = L_y + T + w_ent H(p_t) + w_vat L_vat``

where ``T`` is the method's λ-weighted transfer term (:mod:`backflip.dann._methods`),
``H`` the mean target entropy and ``L_vat`` target VAT, each added when its weight in
the config is set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from backflip.dann._config import TrainConfig
from backflip.dann._losses import entropy_loss
from backflip.dann._methods import Batch, Method
from backflip.dann._vat import vat_loss

__all__ = ["Adapted"]


class Adapted(nn.Module):
    """The user's ``model``, the method's ``heads`` (or ``None``) and the method's loss.

    ``forward(xs, ys, xt, yt, step)`` returns ``{"loss": total, "sums": the step's
    metric sums}``; :meth:`set_lambd` sets this step's λ: on the GRL the method uses, and
    as the weight of the transfer term of the methods without one (a 0-d buffer, so a
    compiled step reads the current value).

    >>> from backflip.dann import build_model
    >>> from backflip.dann._methods import get_method
    >>> cfg = TrainConfig(source="moons", target="moons-rotated", method="coral")
    >>> net = Adapted(get_method("coral"), build_model("moons"), None, cfg, None)
    >>> out = net(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.ones(4, 2), None, 0)
    >>> sorted(out), out["loss"].shape
    (['loss', 'sums'], torch.Size([]))
    """

    def __init__(self, method: Method, model: nn.Module, heads: nn.Module | None,
                 config: TrainConfig,
                 noise: Callable[[int, tuple[int, ...]], torch.Tensor] | None) -> None:
        super().__init__()
        self.method, self.config, self.noise = method, config, noise
        self.model = model
        self.heads = heads
        self.register_buffer("weight", torch.zeros(()), persistent=False)
        # what the methods call: the model's forward, features and classifier, each
        # compiled under config.compile (plain attributes, not submodules: the weights
        # are the model's; VAT's extra passes and the losses stay eager)
        compile_ = torch.compile if config.compile else (lambda m: m)
        calls = {"call": model, "features": model.features, "classifier": model.classifier}
        for name, module in calls.items():
            object.__setattr__(self, name, compile_(module))

    def set_lambd(self, value: float) -> None:
        """This step's λ, for the GRL the method uses and as its term's weight."""
        if self.method.uses_discriminator:
            self.model.grl.set_lambd(value)
        elif self.heads is not None and hasattr(self.heads, "grl"):
            self.heads.grl.set_lambd(value)
        self.weight.fill_(value)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor,
                yt: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        t = self.method.terms(self, Batch(xs, ys, xt, yt, step))
        loss = t.loss_y
        if t.weighted_transfer is not None:
            loss = loss + t.weighted_transfer
        if cfg.target_entropy:
            target_logits = t.target_logits if t.target_logits is not None else self.call(xt)
            t.loss_ent = entropy_loss(target_logits)
            loss = loss + cfg.target_entropy * t.loss_ent
        if cfg.target_vat:
            t.loss_vat = vat_loss(self.model, xt, self.noise(step, tuple(xt.shape[1:])),
                                  cfg.vat_eps)
            loss = loss + cfg.target_vat * t.loss_vat
        t.loss = loss
        return {"loss": loss, "sums": t.sums()}
