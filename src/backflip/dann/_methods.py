"""The training methods: one object each, the only place that knows a method's name.

A :class:`Method` says what it trains on, whether it needs target labels, whether it
uses the GRL, which tasks it supports, which heads it adds to the user's model
(:meth:`Method.heads`) and its loss (:meth:`Method.terms`). The loop calls every method
the same way (:class:`backflip.dann._adapted.Adapted`); nothing outside this module compares a method's name.

Notation: ``L_y`` the source label loss, ``λ(p) = lambd_max (2 / (1 + exp(-γ p)) - 1)``
the scheduled weight of the method's transfer term ``L_t`` in the features' gradient
(through a GRL for the adversarial methods, as a plain weight for the others), and the
optional target terms ``w_ent H`` (target entropy) and ``w_vat L_vat`` (VAT):

============= =================================================================== ======
method        loss (``f`` features, ``z`` logits, ``p = softmax(z)``)             GRL
============= =================================================================== ======
source-only   ``L_y`` on the source                                                no
target-only   ``L_y`` on the labelled target (the upper bound; uses its labels)    no
dann          ``L_y + BCE(D(R_λ(f)))``, ``D`` the model's discriminator           yes
cdan          ``L_y + BCE(D_c(R_λ(f ⊗ p)))``, ``p`` detached                      yes
cdan+e        as cdan, each sample weighted by ``1 + exp(-H(p))``                  yes
mdd           ``L_y + γ CE(f'_s, ŷ_s) - log(1 - f'_t[ŷ_t])``, ``f'`` behind R_λ    yes
mcc           ``L_y + λ L_mcc(z_t / T)``                                           no
coral         ``L_y + λ ‖C_s - C_t‖²_F / (4 d²)``                                  no
============= =================================================================== ======

This module imports no framework at import time (``TrainConfig`` and the CLI read the
names and properties of the methods without torch); the losses are in
:mod:`backflip.dann._losses` and :mod:`backflip.dann._alignment`.

>>> get_method("cdan").uses_grl, get_method("mcc").uses_grl, get_method("source-only").uses_target
(True, False, False)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from backflip._errors import BackflipValueError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from backflip.dann._adapted import Adapted
    from backflip.dann._config import TrainConfig

__all__ = ["METHODS", "SUMS", "Batch", "Method", "Terms", "get_method"]

#: The per-step sums the loop keeps on the device (see Terms.sums), by name.
SUMS = ("loss", "loss_y", "loss_transfer", "loss_ent", "loss_vat", "correct", "domain_correct")


@dataclass
class Batch:
    """This process's share of one step: source samples and labels, target samples."""

    xs: torch.Tensor
    ys: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor | None
    step: int  # the global step (epoch * steps + step): seeds the step's VAT directions


@dataclass
class Terms:
    """A step's loss and its parts (0-d tensors), with what the metrics need."""

    loss_y: torch.Tensor
    logits: torch.Tensor  # class logits of the samples the label loss saw
    labels: torch.Tensor
    loss_transfer: torch.Tensor | None = None  # the method's term (unweighted by λ)
    weighted_transfer: torch.Tensor | None = None  # what it adds to the loss
    domain_correct: torch.Tensor | None = None  # right domain guesses (a count)
    target_logits: torch.Tensor | None = None  # of the same pass, where the method has them
    loss_ent: torch.Tensor | None = None
    loss_vat: torch.Tensor | None = None
    loss: torch.Tensor | None = None  # the total, set by Adapted

    def sums(self) -> torch.Tensor:
        """The step's contribution to :data:`SUMS` (mean terms times the batch size)."""
        import torch

        n = len(self.labels)
        zero = torch.zeros((), device=self.loss_y.device)
        values = {"loss": self.loss, "loss_y": self.loss_y, "loss_transfer": self.loss_transfer,
                  "loss_ent": self.loss_ent, "loss_vat": self.loss_vat}
        out = {k: (zero if v is None else v.detach().float() * n) for k, v in values.items()}
        out["correct"] = (self.logits.argmax(1) == self.labels).sum().float()
        out["domain_correct"] = (zero if self.domain_correct is None
                                 else self.domain_correct.detach().float() / 2)
        return torch.stack([out[k] for k in SUMS]).double()


class Method:
    """One training method (subclasses below; :data:`METHODS` lists them by name)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    paper: ClassVar[str] = ""
    role: ClassVar[str] = "adaptation"  # "baseline" | "oracle" | "adaptation"
    uses_target: ClassVar[bool] = True  # sees (unlabelled) target samples
    needs_target_labels: ClassVar[bool] = False
    uses_grl: ClassVar[bool] = False  # its transfer term reaches the features through a GRL
    has_transfer: ClassVar[bool] = True  # a λ-weighted term (λ printed and plotted)
    uses_discriminator: ClassVar[bool] = False  # the model's own discriminator and grl
    has_domain_head: ClassVar[bool] = False  # reports a domain accuracy
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    default_lambd_max: ClassVar[float] = 1.0

    @property
    def domains(self) -> tuple[str, str]:
        """The DomainBatchNorm statistics (source, target) inputs go through."""
        if not self.uses_target:
            return "source", "source"
        if self.needs_target_labels:  # trains on the labelled target alone
            return "target", "target"
        return "source", "target"

    def heads(self, model: nn.Module, feature_dim: int, num_classes: int,
              config: TrainConfig) -> nn.Module | None:
        """The modules this method adds (trained with the model, saved in the checkpoint)."""
        return None

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        """The step's loss terms (the target terms are added by ``Adapted``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<method {self.name}>"


def _both(ctx: Adapted, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    # One feature pass over [source; target] (DomainBatchNorm: each half its statistics).
    import torch

    from backflip.dann._domain_norm import split_domains

    with split_domains(ctx.model):
        f = ctx.features(torch.cat([b.xs, b.xt]))
        return f.flatten(1), ctx.classifier(f)


class _Supervised(Method):
    # The label loss on one domain's labelled batch (source-only, target-only).
    has_transfer = False
    trains_on: ClassVar[str]

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        from backflip.dann._losses import label_loss

        x, y = (b.xs, b.ys) if self.trains_on == "source" else (b.xt, b.yt)
        logits = ctx.call(x)
        return Terms(label_loss(logits, y), logits, y)


class SourceOnly(_Supervised):
    name = "source-only"
    summary = "the label loss on the source (the baseline every method must beat)"
    role = "baseline"
    uses_target = False
    trains_on = "source"


class TargetOnly(_Supervised):
    name = "target-only"
    summary = "the label loss on the labelled target (upper bound: uses target labels)"
    role = "oracle"
    needs_target_labels = True
    trains_on = "target"


class DANN(Method):
    name = "dann"
    summary = "domain-adversarial training through the model's GRL and discriminator"
    paper = "Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016"
    uses_grl = True
    uses_discriminator = True
    has_domain_head = True

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        import torch

        from backflip.dann._losses import domain_loss, label_loss

        n = len(b.xs)
        z, dom = ctx.call(torch.cat([b.xs, b.xt]), with_domain=True)
        loss_d, correct = domain_loss(dom.reshape(-1), n)
        return Terms(label_loss(z[:n], b.ys), z[:n], b.ys, loss_d, loss_d, correct, z[n:])


class CDAN(Method):
    """Conditional adversarial DA: the domain head sees ``f ⊗ p`` (``p`` detached)."""

    name = "cdan"
    summary = "conditional adversarial: a domain head on features x class probabilities"
    paper = "Long et al., NeurIPS 2018"
    uses_grl = True
    has_domain_head = True
    entropy_conditioning: ClassVar[bool] = False
    #: the multilinear map above this many columns becomes the randomized map of
    #: ``RANDOM_DIM`` columns (the paper's rule: 4096 and 1024)
    MAX_MULTILINEAR: ClassVar[int] = 4096
    RANDOM_DIM: ClassVar[int] = 1024

    def heads(self, model: nn.Module, feature_dim: int, num_classes: int,
              config: TrainConfig) -> nn.Module:
        from torch import nn

        from backflip.dann._alignment import RandomizedMultilinearMap
        from backflip.torch import GradientReversal

        full = feature_dim * num_classes
        dim = full if full <= self.MAX_MULTILINEAR else self.RANDOM_DIM
        hidden = min(1024, dim)
        heads = nn.Module()
        heads.grl = GradientReversal(0.0)
        heads.random_map = (RandomizedMultilinearMap(feature_dim, num_classes, dim, config.seed)
                            if full > self.MAX_MULTILINEAR else None)
        heads.discriminator = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                            nn.Linear(hidden, hidden), nn.ReLU(),
                                            nn.Linear(hidden, 1))
        return heads

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        from backflip.dann._alignment import entropy_weights, multilinear_map, weighted_domain_loss
        from backflip.dann._losses import label_loss

        n, heads = len(b.xs), ctx.heads
        f, z = _both(ctx, b)
        p = z.detach().float().softmax(1)
        h = heads.grl(f)
        h = multilinear_map(h, p) if heads.random_map is None else heads.random_map(h, p)
        d = heads.discriminator(h).reshape(-1).float()
        w = entropy_weights(p, n) if self.entropy_conditioning else None
        loss_d = weighted_domain_loss(d, n, w)
        correct = (d[:n] <= 0).sum() + (d[n:] > 0).sum()
        return Terms(label_loss(z[:n], b.ys), z[:n], b.ys, loss_d, loss_d, correct.float(),
                     z[n:])


class CDANE(CDAN):
    name = "cdan+e"
    summary = "cdan with entropy conditioning: confident samples weigh more (1 + exp(-H))"
    entropy_conditioning = True


class MDD(Method):
    """Margin disparity discrepancy: an adversarial copy of the classifier behind the GRL."""

    name = "mdd"
    summary = "margin disparity discrepancy: an adversarial classifier behind the GRL (margin γ)"
    paper = "Zhang et al., ICML 2019"
    uses_grl = True
    #: tllib's and the authors' code ramp the reversal to 0.1 (with the margin 4, a
    #: reversal of 1 swamps the label loss); --lambd-max overrides it
    default_lambd_max = 0.1

    def heads(self, model: nn.Module, feature_dim: int, num_classes: int,
              config: TrainConfig) -> nn.Module:
        # f' has the classifier's architecture (the paper), freshly initialised.
        import torch
        from torch import nn

        from backflip.torch import GradientReversal

        adversary = copy.deepcopy(model.classifier)
        with torch.no_grad():
            for m in adversary.modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
        heads = nn.Module()
        heads.grl = GradientReversal(0.0)
        heads.adversary = adversary
        return heads

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        from backflip.dann._alignment import mdd_disparity
        from backflip.dann._losses import label_loss

        n = len(b.xs)
        f, z = _both(ctx, b)
        adv = ctx.heads.adversary(ctx.heads.grl(f))
        disparity = mdd_disparity(z[:n], adv[:n], z[n:], adv[n:], ctx.config.margin)
        return Terms(label_loss(z[:n], b.ys), z[:n], b.ys, disparity, disparity,
                     target_logits=z[n:])


class _Weighted(Method):
    # A term without a GRL: L_y + λ T(f, z) over one feature pass of [source; target].
    def transfer(self, ctx: Adapted, f: torch.Tensor, z: torch.Tensor, n: int) -> torch.Tensor:
        raise NotImplementedError

    def terms(self, ctx: Adapted, b: Batch) -> Terms:
        from backflip.dann._losses import label_loss

        n = len(b.xs)
        f, z = _both(ctx, b)
        loss = self.transfer(ctx, f, z, n)
        return Terms(label_loss(z[:n], b.ys), z[:n], b.ys, loss, ctx.weight * loss,
                     target_logits=z[n:])


class MCC(_Weighted):
    name = "mcc"
    summary = "minimum class confusion on the target predictions (no domain head)"
    paper = "Jin et al., ECCV 2020"

    def transfer(self, ctx: Adapted, f: torch.Tensor, z: torch.Tensor, n: int) -> torch.Tensor:
        from backflip.dann._alignment import mcc_loss

        return mcc_loss(z[n:], ctx.config.temperature)


class CORAL(_Weighted):
    name = "coral"
    summary = "Deep CORAL: match the features' covariance matrices (no domain head)"
    paper = "Sun & Saenko, ECCV 2016 workshops"

    def transfer(self, ctx: Adapted, f: torch.Tensor, z: torch.Tensor, n: int) -> torch.Tensor:
        from backflip.dann._alignment import coral_loss

        return coral_loss(f[:n], f[n:])


#: name -> method, in the order --help lists them.
METHODS: dict[str, Method] = {m.name: m for m in (
    SourceOnly(), DANN(), CDAN(), CDANE(), MDD(), MCC(), CORAL(), TargetOnly())}


def get_method(name: str | Method) -> Method:
    """The method called ``name`` (a :class:`Method` is returned as it is).

    >>> get_method("mdd").default_lambd_max
    0.1
    >>> get_method("dan")
    Traceback (most recent call last):
    ...
    backflip._errors.BackflipValueError: unknown method 'dan'; choose one of source-only, dann, cdan, cdan+e, mdd, mcc, coral, target-only.
    """
    if isinstance(name, Method):
        return name
    if name not in METHODS:
        raise BackflipValueError(
            f"unknown method {name!r}; choose one of {', '.join(METHODS)}."
        )
    return METHODS[name]
