"""Virtual adversarial training (VAT) on unlabelled data: the smoothness term of VADA.

Miyato et al., "Virtual Adversarial Training" (TPAMI 2018); Shu et al., "A DIRT-T
Approach to Unsupervised Domain Adaptation" (ICLR 2018), whose VADA adds it on the
target to DANN. For a batch ``x`` with the model's current predictions
``p = softmax(f(x))`` (held fixed)::

    d     = u / ||u||,  u ~ N(0, I)                      (one direction per sample)
    g     = grad_d KL(p || softmax(f(x + xi * d)))        (one power-iteration step)
    r_adv = eps * g / ||g||
    L_vat = mean_i KL(p_i || softmax(f(x_i + r_adv_i)))

``||.||`` is the L2 norm of one sample over all its non-batch axes, in the units of
the model's input. Minimising ``L_vat`` makes the prediction change little within
``eps`` of every target point, so the decision boundary is pushed out of the dense
regions of the target (the cluster assumption) instead of cutting through them.

All three forward passes (the clean one that gives ``p`` and the two perturbed ones)
normalise a training batch with its own batch statistics and leave every running
statistic as it was (``nn.BatchNorm*``, ``nn.InstanceNorm*`` with running statistics,
:class:`~backflip.dann.DomainBatchNorm`): otherwise three extra target-only batches per
step, two of them perturbed, would drag the statistics that the model applies at test
time. Dropout modules (``nn.Dropout*``) are off in them: the term measures how the
prediction moves with the input, not with the dropout masks, and nothing is drawn from
the global RNG (a functional ``F.dropout`` inside a custom module is not seen). The random
directions come from the caller's ``noise``, so a run is reproducible and a resumed or
distributed run draws the same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from backflip.dann._domain_norm import DomainBatchNorm

__all__ = ["vat_loss"]


def _unit(t: torch.Tensor) -> torch.Tensor:
    norm = t.flatten(1).norm(dim=1).clamp_min(1e-12)
    return t / norm.view(-1, *([1] * (t.dim() - 1)))


@contextlib.contextmanager
def _frozen_statistics(model: nn.Module) -> Iterator[None]:
    # Only modules in training mode change: an eval-mode norm already reads its running
    # statistics without updating them. A torch norm whose running buffers are None and
    # track_running_stats False normalises by the batch (instance norm passes its
    # buffers whatever the flag says, so both go); DomainBatchNorm reads its own flag.
    live = [m for m in model.modules() if m.training]
    norms = [m for m in live if isinstance(m, nn.modules.batchnorm._NormBase)]
    saved = [(m.track_running_stats, m.running_mean, m.running_var) for m in norms]
    ours = [m for m in live if isinstance(m, DomainBatchNorm)]
    ours_saved = [m.track_running_stats for m in ours]
    drops = [m for m in live if isinstance(m, nn.modules.dropout._DropoutNd)]
    for m in norms:
        m.track_running_stats, m.running_mean, m.running_var = False, None, None
    for m in ours:
        m.track_running_stats = False
    for m in drops:
        m.training = False
    try:
        yield
    finally:
        for m, (track, mean, var) in zip(norms, saved, strict=True):
            m.track_running_stats, m.running_mean, m.running_var = track, mean, var
        for m, track in zip(ours, ours_saved, strict=True):
            m.track_running_stats = track
        for m in drops:
            m.training = True


def vat_loss(model: nn.Module, x: torch.Tensor, noise: torch.Tensor, eps: float,
             xi: float = 1e-2) -> torch.Tensor:
    """Mean KL divergence between the model's predictions at ``x`` and at ``x + r_adv``.

    ``noise`` has ``x``'s shape and gives the random starting direction; ``eps`` is the
    L2 radius of the adversarial perturbation and ``xi`` the length of the
    finite-difference step. The prediction at ``x`` is computed here, without gradient
    (it is the fixed target of the term). Everything runs in float32 outside any
    autocast: a bf16/fp16 input cannot hold a step of length ``xi``.

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> f = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> loss = vat_loss(f, torch.randn(16, 2), torch.randn(16, 2), eps=0.5)
    >>> bool(loss > 0), loss.requires_grad
    (True, True)
    """
    with torch.autocast(x.device.type, enabled=False), _frozen_statistics(model):
        x = x.detach().float()
        with torch.no_grad():
            p = model(x).float().softmax(1)
        d = (xi * _unit(noise.to(x.device, torch.float32))).requires_grad_(True)
        kl = F.kl_div(model(x + d).float().log_softmax(1), p, reduction="batchmean")
        (g,) = torch.autograd.grad(kl, d)
        r_adv = eps * _unit(g)
        return F.kl_div(model(x + r_adv).float().log_softmax(1), p, reduction="batchmean")
