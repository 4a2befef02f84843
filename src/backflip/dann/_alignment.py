"""The alignment terms of the method family, as pure functions of tensors (no model, no state).

Notation: a batch of ``n_s`` source samples then ``n_t`` target samples; ``f`` features
``(N, F)``, ``z`` class logits ``(N, C)``, ``p = softmax(z)``, ``H(p) = -sum_k p_k log p_k``.

* CDAN (Long et al., "Conditional Adversarial Domain Adaptation", NeurIPS 2018): the
  domain head sees ``h = f ⊗ p`` (:func:`multilinear_map`, ``F·C`` columns) or, when
  ``F·C`` is large, the randomized map ``(R_f f) ⊙ (R_g p) / sqrt(d)``
  (:class:`RandomizedMultilinearMap`); CDAN+E weights each sample by
  ``w = 1 + exp(-H(p))`` (:func:`entropy_weights`).
* MDD (Zhang et al., "Bridging Theory and Algorithm for Domain Adaptation", ICML 2019):
  :func:`mdd_disparity`.
* MCC (Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020):
  :func:`mcc_loss`.
* Deep CORAL (Sun & Saenko, ECCV 2016 workshops): :func:`coral_loss`.

Every function computes in float32 whatever its inputs' dtype (safe under autocast).

>>> import torch
>>> round(float(coral_loss(torch.eye(3), torch.eye(3))), 6)   # same covariance: 0
0.0
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomizedMultilinearMap", "coral_loss", "entropy", "entropy_weights",
           "mcc_loss", "mdd_disparity", "multilinear_map", "weighted_domain_loss"]


def entropy(probs: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample entropy ``H(p_i) = -sum_k p_ik log p_ik`` (nats) of probabilities ``(N, C)``.

    >>> entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]])).tolist()
    [0.6931471824645996, -0.0]
    """
    p = probs.float()
    return -(p * (p + eps).log()).sum(1)


def multilinear_map(features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``h_i = vec(f_i p_i^T)``: the outer product of features ``(N, F)`` and probabilities ``(N, C)``.

    Returns ``(N, F·C)``; column ``a·C + k`` is ``f_ia p_ik``.

    >>> multilinear_map(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.25, 0.75]])).tolist()
    [[0.25, 0.75, 0.5, 1.5]]
    """
    f, p = features.float(), probs.float()
    return torch.bmm(f.unsqueeze(2), p.unsqueeze(1)).flatten(1)


class RandomizedMultilinearMap(nn.Module):
    """``T(f, p) = (f R_f) ⊙ (p R_g) / sqrt(d)``, fixed Gaussian ``R_f (F, d)``, ``R_g (C, d)``.

    Its inner products equal the multilinear map's in expectation:
    ``E[<T(f, p), T(f', p')>] = <f, f'> <p, p'> = <f ⊗ p, f' ⊗ p'>`` (the entries of
    ``R_f`` and ``R_g`` are independent standard normals). The matrices are drawn once
    from ``seed`` and kept as buffers (saved with the checkpoint, never trained). CDAN
    uses it with ``d = 1024`` when ``F·C`` exceeds 4096.

    >>> m = RandomizedMultilinearMap(5, 3, dim=16)
    >>> m(torch.ones(2, 5), torch.ones(2, 3)).shape
    torch.Size([2, 16])
    """

    def __init__(self, feature_dim: int, num_classes: int, dim: int = 1024, seed: int = 0
                 ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.register_buffer("r_f", torch.randn(feature_dim, dim, generator=gen))
        self.register_buffer("r_g", torch.randn(num_classes, dim, generator=gen))

    def forward(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return (features.float() @ self.r_f) * (probs.float() @ self.r_g) / math.sqrt(self.dim)


def entropy_weights(probs: torch.Tensor, n_source: int) -> torch.Tensor:
    """CDAN+E's sample weights ``w_i = 1 + exp(-H(p_i))``, normalised per domain, no gradient.

    Within each domain the weights are scaled to sum to that domain's sample count, so
    both domains keep their share of the domain loss (the authors' code normalises per
    domain; tllib normalises over the whole batch, which lets the more confident domain
    dominate). Confident samples (low entropy) weigh up to 2x the uncertain ones.

    >>> entropy_weights(torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]), 2).tolist()
    [1.1428571939468384, 0.8571428656578064, 1.0]
    """
    w = 1.0 + torch.exp(-entropy(probs.detach()))
    s, t = w[:n_source], w[n_source:]
    return torch.cat([s * len(s) / s.sum(), t * len(t) / t.sum()])


def weighted_domain_loss(domain_logits: torch.Tensor, n_source: int,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_j w_j BCE(d_j, t_j) / sum_j w_j`` (``t_j`` 0 for source, 1 for target).

    With ``weights=None`` it is the plain mean BCE of DANN's domain loss.

    >>> d = torch.tensor([-2.0, 3.0])
    >>> round(float(weighted_domain_loss(d, 1)), 4), round(float(weighted_domain_loss(
    ...     d, 1, torch.tensor([1.0, 0.0]))), 4)
    (0.0878, 0.1269)
    """
    d = domain_logits.float().reshape(-1)
    t = torch.cat([torch.zeros(n_source, device=d.device),
                   torch.ones(len(d) - n_source, device=d.device)])
    per = F.binary_cross_entropy_with_logits(d, t, reduction="none")
    if weights is None:
        return per.mean()
    w = weights.float()
    return (w * per).sum() / w.sum()


def mdd_disparity(logits_s: torch.Tensor, adv_s: torch.Tensor, logits_t: torch.Tensor,
                  adv_t: torch.Tensor, margin: float = 4.0) -> torch.Tensor:
    """MDD's margin disparity, the loss of the adversarial classifier ``f'``:

    ``D = γ · mean_s CE(z'_s, ŷ_s) + mean_t -log(1 - softmax(z'_t)[ŷ_t])``,
    ``ŷ = argmax z`` of the main classifier (a label, no gradient).

    ``f'`` sits behind a GRL: it minimises ``D`` (agree with the main classifier on the
    source, disagree on the target), while the features, through the reversal, maximise
    it (make the two classifiers agree on the target too). The margin ``γ`` (paper: 4)
    weighs the source term; ``log(1 - p)`` is taken as ``log(min(1, 1 - p + 1e-6))``, the
    paper's clamp, so a confident agreement on the target costs at most ``-log(1e-6)``. We clamp the
    source term alike, ``CE = -log(max(p'_s[ŷ_s], 1e-6))`` (the paper does not): the
    features maximise it through the reversal, and unclamped it is unbounded (the moons
    preset at lr 0.05 reached NaN in 12 epochs); with the clamp its push stops there.

    >>> z = torch.tensor([[2.0, 0.0]])
    >>> round(float(mdd_disparity(z, z, z, z, margin=4.0)), 4)
    2.6346
    """
    pred_s = logits_s.detach().argmax(1)
    pred_t = logits_t.detach().argmax(1)
    logp_s = adv_s.float().log_softmax(1).gather(1, pred_s[:, None]).squeeze(1)
    source = -logp_s.clamp_min(math.log(1e-6)).mean()
    p_t = adv_t.float().softmax(1).gather(1, pred_t[:, None]).squeeze(1)
    target = -torch.clamp(1.0 - p_t + 1e-6, max=1.0).log().mean()
    return margin * source + target


def mcc_loss(target_logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion of target logits ``(N, C)``:

    ``p = softmax(z / T)``; ``w_i = N (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j)))``
    (no gradient); ``M = p^T diag(w) p`` (``C x C``), each row divided by its sum;
    ``L = (sum_jk M_jk - sum_j M_jj) / C``, the mean confusion between different classes
    (0 when every sample is certain of one class). ``T`` is the paper's temperature (2.5).

    >>> round(float(mcc_loss(torch.tensor([[50.0, 0.0], [0.0, 50.0]]))), 6)
    0.0
    >>> round(float(mcc_loss(torch.zeros(4, 2))), 4)    # all uncertain: half confused
    0.5
    """
    n, c = target_logits.shape
    p = (target_logits.float() / temperature).softmax(1)
    w = 1.0 + torch.exp(-entropy(p.detach()))
    w = (n * w / w.sum()).unsqueeze(1)
    m = (p * w).t() @ p
    m = m / m.sum(1, keepdim=True)
    return (m.sum() - m.trace()) / c


def coral_loss(source_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: ``‖C_s - C_t‖²_F / (4 d²)`` of the features' covariance matrices ``(d, d)``.

    ``C = (X^T X - (1^T X)^T (1^T X) / n) / (n - 1)`` of each domain's features ``(n, d)``
    (the unbiased covariance, as in the paper).

    >>> xs = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])     # variance 2 on the first axis
    >>> xt = torch.tensor([[0.0, 1.0], [0.0, -1.0]])     # variance 2 on the second
    >>> float(coral_loss(xs, xt))                         # (2² + 2²) / (4 · 2²)
    0.5
    """
    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x.float().flatten(1)
        centred = x - x.mean(0, keepdim=True)
        return centred.t() @ centred / (len(x) - 1)

    d = source_features.flatten(1).shape[1]
    return ((cov(source_features) - cov(target_features)) ** 2).sum() / (4 * d * d)
