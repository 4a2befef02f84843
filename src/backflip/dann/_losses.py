"""The training losses as pure functions of logits and labels (no model, no state).

For a batch of ``n_s`` source samples followed by ``n_t`` target samples:

* label loss ``L_y = mean_i CE(z_i, y_i)`` over the source logits ``z_i``;
* domain loss ``L_d = mean_j BCE(d_j, t_j)`` over all ``n_s + n_t`` domain logits
  ``d_j``, with ``t_j = 0`` for source and ``1`` for target (Ganin & Lempitsky 2015;
  the GRL in front of the domain head turns its gradient into ``-λ dL_d/dθ_f``);
* target entropy ``H = mean_i -sum_k p_ik log p_ik``, ``p_i = softmax(z_i)``
  (Grandvalet & Bengio 2004);
* VAT is :func:`backflip.dann.vat_loss` (it needs the model: it perturbs the input).

Every function computes in float32 whatever its inputs' dtype (safe under autocast).

>>> import torch
>>> round(float(entropy_loss(torch.zeros(3, 2))), 4)   # uniform over 2 classes: ln 2
0.6931
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["domain_labels", "domain_loss", "entropy_loss", "label_loss"]


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy ``L_y`` of class logits ``(N, K)`` against labels ``(N,)``.

    >>> round(float(label_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)
    0.6931
    """
    return F.cross_entropy(logits.float(), labels)


def domain_labels(n_source: int, n_target: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
    """``[0] * n_source + [1] * n_target`` as float32 (source 0, target 1).

    >>> domain_labels(2, 1)
    tensor([0., 0., 1.])
    """
    return torch.cat([torch.zeros(n_source, device=device), torch.ones(n_target, device=device)])


def domain_loss(domain_logits: torch.Tensor, n_source: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_d, correct)``: the mean BCE of the domain logits and how many are right.

    ``domain_logits`` is ``(n_source + n_target,)``, source first. ``correct`` counts
    the samples whose logit has the right sign (``> 0`` means target), as a float.

    >>> loss, correct = domain_loss(torch.tensor([-2.0, -1.0, 3.0]), n_source=1)
    >>> round(float(loss), 4), float(correct)
    (0.4963, 2.0)
    """
    d = domain_logits.float()
    t = domain_labels(n_source, len(d) - n_source, d.device)
    return F.binary_cross_entropy_with_logits(d, t), ((d > 0).float() == t).float().sum()


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy (nats) ``mean_i -sum_k p_ik log p_ik`` of logits ``(N, K)``.

    >>> round(float(entropy_loss(torch.tensor([[100.0, 0.0]]))), 6)   # certain: 0
    0.0
    """
    logp = logits.float().log_softmax(1)
    return -(logp.exp() * logp).sum(1).mean()
