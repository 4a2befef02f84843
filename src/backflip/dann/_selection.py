"""Model selection without target labels: source validation, DEV, target entropy, SND.

Never pick a checkpoint by target test labels. Each criterion scores an epoch from
source-validation labels and unlabelled target samples only:

* ``source_val_acc`` (higher is better): accuracy on held-out source data;
* ``dev_risk`` (lower is better): Deep Embedded Validation (You et al., ICML 2019),
  the source-validation loss importance-weighted by ``w(x) = p_t(x) / p_s(x)`` from a
  logistic domain classifier on the features, with the control variate
  ``eta = -Cov(w L, w) / Var(w)``: ``risk = mean(w L) + eta mean(w) - eta``;
* ``target_entropy`` (lower is better): mean prediction entropy on the target;
* ``snd`` (higher is better): soft neighbourhood density (Saito et al., ICCV 2021), the
  entropy of the softmax over target-target similarities of the predictions. It is
  highest when every target point is predicted alike, so a model that has collapsed
  onto one class scores well: read it beside the others, never alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backflip._optional import require

__all__ = ["CRITERIA", "dev_risk", "pick", "pick_run", "snd", "target_entropy"]

CRITERIA = {"source_val_acc": "max", "dev_risk": "min", "target_entropy": "min", "snd": "max"}


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def target_entropy(target_logits: np.ndarray) -> float:
    """Mean entropy (nats) of the target predictions.

    >>> round(target_entropy(np.zeros((3, 2))), 4)
    0.6931
    """
    p = _softmax(np.asarray(target_logits, np.float64))
    return float(-(p * np.log(p + 1e-12)).sum(1).mean())


def snd(target_logits: np.ndarray, temperature: float = 0.05) -> float:
    """Soft neighbourhood density of the target predictions (higher: denser clusters).

    ``p`` = row-normalised softmax(logits), ``s = p p^T`` (diagonal excluded),
    ``q = softmax(s / temperature)`` per row; SND = mean row entropy of ``q``.

    >>> round(snd(np.zeros((3, 2))), 4)  # all alike: q uniform over the 2 others, log 2
    0.6931
    """
    p = _softmax(np.asarray(target_logits, np.float64))
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    sim = p @ p.T
    np.fill_diagonal(sim, -np.inf)
    q = _softmax(sim / temperature)
    return float(-(q * np.log(q + 1e-12)).sum(1).mean())


def dev_risk(source_train_feats: np.ndarray, target_feats: np.ndarray,
             val_feats: np.ndarray, val_losses: np.ndarray) -> float:
    """Deep Embedded Validation risk of one model (lower is better).

    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(50, 3))
    >>> r = dev_risk(f, f + 0.1, f[:20], np.full(20, 0.5))
    >>> abs(r - 0.5) < 1e-6
    True
    """
    linear_model = require("sklearn.linear_model", purpose="dev_risk (model selection)")

    xs = np.asarray(source_train_feats, np.float64)
    xt = np.asarray(target_feats, np.float64)
    mu, sd = xs.mean(0), xs.std(0) + 1e-8
    clf = linear_model.LogisticRegression(max_iter=1000)
    clf.fit(np.concatenate([(xs - mu) / sd, (xt - mu) / sd]),
            np.r_[np.zeros(len(xs)), np.ones(len(xt))])
    pt = clf.predict_proba((np.asarray(val_feats, np.float64) - mu) / sd)[:, 1]
    pt = np.clip(pt, 1e-6, 1 - 1e-6)
    return _dev_estimate(pt / (1 - pt) * len(xs) / len(xt), np.asarray(val_losses, np.float64))


def _dev_estimate(w: np.ndarray, loss: np.ndarray) -> float:
    # The importance-weighted mean loss with DEV's control variate (the weights' mean is
    # 1 in expectation): mean(w L) + eta (mean(w) - 1), eta = -Cov(w L, w) / Var(w).
    wl = w * loss
    var = w.var(ddof=1)
    eta = 0.0 if var < 1e-12 else -np.cov(wl, w)[0, 1] / var
    return float(wl.mean() + eta * w.mean() - eta)


def pick(history: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """For each criterion, the epoch it would pick and that epoch's target accuracy.

    The target accuracy is only reported, never used to choose.

    >>> h = [{"epoch": 1, "source_val_acc": 0.5, "target_acc": 0.4},
    ...      {"epoch": 2, "source_val_acc": 0.9, "target_acc": 0.6}]
    >>> pick(h)["source_val_acc"]
    {'epoch': 2, 'target_acc': 0.6}
    """
    out: dict[str, dict[str, float]] = {}
    for name, sense in CRITERIA.items():
        rows = [r for r in history if r.get(name) is not None and np.isfinite(r[name])]
        if not rows:
            continue
        best = (max if sense == "max" else min)(rows, key=lambda r, n=name: r[n])
        acc = best.get("target_acc")  # None: the run had no labelled target test set
        out[name] = {"epoch": int(best["epoch"]), "target_acc": None if acc is None else float(acc)}
    return out


def pick_run(rows: dict[str, dict[str, Any]], criterion: str) -> str | None:
    """The name of the run whose metrics row ``criterion`` prefers (``None``: no row has it).

    ``rows`` maps a run's name (a method, a trial) to its final epoch's row; the target
    accuracy in the rows is never read. Ties go to the first run.

    >>> pick_run({"source-only": {"dev_risk": 0.4, "target_acc": 0.9},
    ...           "dann": {"dev_risk": 0.3, "target_acc": 0.1}}, "dev_risk")
    'dann'
    """
    sense = CRITERIA[criterion]
    scored = [(name, r[criterion]) for name, r in rows.items()
              if r.get(criterion) is not None and np.isfinite(r[criterion])]
    if not scored:
        return None
    best = (max if sense == "max" else min)(scored, key=lambda item: item[1])
    return best[0]
