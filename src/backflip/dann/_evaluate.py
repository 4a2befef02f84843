"""Per-epoch evaluation (target accuracy and the label-free criteria) and the collapse guard.

Target accuracy is only reported; every selection criterion reads source labels and
unlabelled target samples alone (:mod:`backflip.dann._selection`). Without a labelled
target test set the run reports no target accuracy (``target_acc`` is ``None``) and
the criteria as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backflip.dann._domain_norm import bn_domain
from backflip.dann._methods import get_method
from backflip.dann._selection import dev_risk, snd, target_entropy

__all__ = ["EvalSets", "collapsed", "evaluate", "norm_domains", "predict"]


def norm_domains(method: str) -> tuple[str, str]:
    """The DomainBatchNorm statistics (source, target) inputs go through under ``method``.

    Each domain's own under a method that trains on both; a single-domain method has
    only its training domain's.

    >>> norm_domains("dann"), norm_domains("source-only")
    (('source', 'target'), ('source', 'source'))
    """
    return get_method(method).domains


@dataclass
class EvalSets:
    """The samples evaluated after every epoch (the first ``eval_limit`` of each), on the device."""

    target_test_x: torch.Tensor | None
    target_test_y: np.ndarray | None
    target_x: torch.Tensor
    source_x: torch.Tensor
    val_x: torch.Tensor | None
    val_y: np.ndarray | None
    domains: tuple[str, str]
    source_y: np.ndarray | None = None  # labels of source_x (plots only)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, chunk: int = 512
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, features)`` of ``x`` as float32 NumPy arrays, in chunks."""
    logits, feats = [], []
    for i in range(0, len(x), chunk):
        f = model.features(x[i:i + chunk])
        feats.append(f.flatten(1).float())
        logits.append(model.classifier(f).float())
    return torch.cat(logits).cpu().numpy(), torch.cat(feats).cpu().numpy()


def evaluate(model: torch.nn.Module, ev: EvalSets) -> dict[str, Any]:
    """One epoch's evaluation row: target accuracy (or ``None``) and the criteria."""
    model.eval()
    out: dict[str, Any] = {}
    source_domain, target_domain = ev.domains
    bn_domain(model, target_domain)
    if ev.target_test_x is not None:
        t_logits, _ = predict(model, ev.target_test_x)
        out["target_acc"] = float((t_logits.argmax(1) == ev.target_test_y).mean())
        out["target_test_n"] = len(ev.target_test_y)  # the first eval_limit test samples
    else:
        out["target_acc"], out["target_test_n"] = None, 0
    tu_logits, tu_feats = predict(model, ev.target_x)
    out["target_entropy"] = target_entropy(tu_logits)
    out["snd"] = snd(tu_logits[:1000])
    if ev.val_x is not None:
        bn_domain(model, source_domain)
        v_logits, v_feats = predict(model, ev.val_x)
        out["source_val_acc"] = float((v_logits.argmax(1) == ev.val_y).mean())
        v = torch.from_numpy(v_logits)
        losses = F.cross_entropy(v, torch.from_numpy(ev.val_y), reduction="none").numpy()
        _, s_feats = predict(model, ev.source_x)
        out["dev_risk"] = dev_risk(s_feats[:1000], tu_feats[:1000], v_feats, losses)
    bn_domain(model, target_domain)  # the default a saved model applies
    model.train()
    return out


def collapsed(history: list[dict[str, Any]], row: dict[str, Any], num_classes: int) -> bool:
    """Whether the label head fell back to chance after it had learned.

    Then the features stopped separating the classes (under DANN, typically the
    reversed domain gradient won).

    >>> collapsed([{"train_acc": 0.9}], {"train_acc": 0.5}, num_classes=2)
    True
    """
    chance = 1.0 / num_classes
    best = max((r["train_acc"] for r in history), default=0.0)
    return row["train_acc"] <= chance + 0.05 and best >= chance + 0.25
