"""Batch normalisation with one set of statistics per domain (DSBN, AdaBN).

Ordinary batch norm under DANN sees the concatenated source + target batch and keeps
one running mean/variance for the mixture. :class:`DomainBatchNorm` keeps two, one per
domain, and shares the affine parameters (Chang et al., "Domain-Specific Batch
Normalization", CVPR 2019; Li et al., "AdaBN", 2016)::

    y = weight * (x - mean_d) / sqrt(var_d + eps) + bias,   d = the domain of x

In training, a batch flagged as two-domain (``split = True``, set by
``DANN.forward(x, with_domain=True)`` for the duration of the call) holds source
then target samples in two equal halves; each half is normalised with its own batch
statistics and updates its own running statistics. Any other batch (evaluation, or
``source-only``/``target-only`` training) uses the statistics of ``domain`` (0 source,
1 target; saved in the ``state_dict`` as extra state), so a checkpoint remembers which
statistics the model applies by default. Target statistics come from unlabelled target images only.
With ``track_running_stats = False`` (as in ``nn.BatchNorm``), a training batch is
normalised by its own statistics and updates none: :func:`backflip.dann.vat_loss` sets
it for its extra forward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from backflip._errors import BackflipValueError

__all__ = ["DOMAINS", "DomainBatchNorm", "bn_domain", "split_domains"]

#: Domain names and their row in ``DomainBatchNorm.running_mean``/``running_var``.
DOMAINS = {"source": 0, "target": 1}


class DomainBatchNorm(nn.Module):
    """Batch norm over axis 1 with per-domain running statistics and shared weight/bias.

    Works on ``(N, C)`` and ``(N, C, ...)`` inputs, like ``nn.BatchNorm1d``/``2d``.

    >>> bn = DomainBatchNorm(2)
    >>> bn.split = True
    >>> x = torch.cat([torch.randn(8, 2), torch.randn(8, 2) + 5.0])
    >>> y = bn(x)
    >>> bool(y[8:].mean().abs() < 1e-5)         # the target half normalised by its own mean
    True
    >>> bool(bn.running_mean[1].mean() > bn.running_mean[0].mean())
    True
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(len(DOMAINS), num_features))
        self.register_buffer("running_var", torch.ones(len(DOMAINS), num_features))
        self.domain = DOMAINS["target"]  # saved in state_dict as extra state
        self.split = False  # transient: this training batch is [source half; target half]
        self.track_running_stats = True  # False: training batches use and update no running statistics

    def get_extra_state(self) -> dict[str, int]:
        # A plain int (no tensor: no device sync per forward, no graph break under
        # torch.compile), still saved with the weights and loadable with weights_only.
        return {"domain": self.domain}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.domain = int(state["domain"])

    def _norm(self, x: torch.Tensor, d: int) -> torch.Tensor:
        # Rows of the (2, C) buffers are contiguous views: batch_norm updates them in place.
        if self.training and not self.track_running_stats:  # batch statistics, no update
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean[d], self.running_var[d], self.weight,
                            self.bias, self.training, self.momentum, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.split:
            if len(x) % 2:
                raise BackflipValueError(
                    f"a two-domain batch must hold equal source and target halves; got "
                    f"{len(x)} samples. Pass the same number of each."
                )
            xs, xt = x.chunk(2)
            return torch.cat([self._norm(xs, DOMAINS["source"]), self._norm(xt, DOMAINS["target"])])
        return self._norm(x, self.domain)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, momentum={self.momentum}, per-domain statistics"


def _norms(model: nn.Module) -> list[DomainBatchNorm]:
    return [m for m in model.modules() if isinstance(m, DomainBatchNorm)]


@contextlib.contextmanager
def split_domains(model: nn.Module) -> Iterator[None]:
    """Within the block, training batches of ``model`` are [source half; target half]."""
    norms = _norms(model)
    for m in norms:
        m.split = True
    try:
        yield
    finally:
        for m in norms:
            m.split = False


def bn_domain(model: nn.Module, domain: str) -> None:
    """Make every :class:`DomainBatchNorm` of ``model`` apply ``domain``'s statistics.

    >>> m = nn.Sequential(nn.Linear(2, 2), DomainBatchNorm(2))
    >>> bn_domain(m, "source"); int(m[1].domain)
    0
    """
    if domain not in DOMAINS:
        raise BackflipValueError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}.")
    for m in _norms(model):
        m.domain = DOMAINS[domain]
