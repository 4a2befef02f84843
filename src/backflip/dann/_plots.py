"""Plots of a run (scikit-learn style: compute once in the constructor, ``plot(ax=None)``).

* :class:`TrainingCurves`: accuracy and loss per epoch (label head, domain head) with λ;
* :class:`FeatureProjection`: PCA of source vs target features;
* :class:`DecisionBoundary`: a 2-d classifier's regions with both domains;
* :func:`proxy_a_distance`: ``2 (1 - 2 err)`` of a linear domain classifier on features
  (Ben-David et al. 2007), small when the features do not tell the domains apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DecisionBoundary", "FeatureProjection", "TrainingCurves", "proxy_a_distance"]


def _axes(ax):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        return fig, ax
    return ax.figure, ax


def proxy_a_distance(source_feats: np.ndarray, target_feats: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` of a logistic domain classifier (held-out half).

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(200, 2))
    >>> round(proxy_a_distance(a, a + 10.0), 2)
    2.0
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([source_feats, target_feats]).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    y = np.r_[np.zeros(len(source_feats)), np.ones(len(target_feats))]
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    tr, te = order[:half], order[half:]
    clf = LogisticRegression(max_iter=1000).fit(x[tr], y[tr])
    err = float((clf.predict(x[te]) != y[te]).mean())
    return 2.0 * (1.0 - 2.0 * min(err, 0.5))


class TrainingCurves:
    """Per-epoch accuracy and loss of the label and domain heads, with λ on a twin axis.

    >>> h = [{"epoch": 1, "train_acc": .5, "target_acc": .4, "source_val_acc": .5,
    ...       "domain_acc": .9, "loss_y": 1.0, "loss_d": .6, "lambd": 0.0}]
    >>> TrainingCurves(h).plot().axes[0].get_xlabel()
    'epoch'
    """

    def __init__(self, history: list[dict[str, Any]], title: str = "") -> None:
        self.history_ = history
        self.title = title

    def plot(self, ax=None):
        fig, ax = _axes(ax)
        ep = [r["epoch"] for r in self.history_]
        for key, label in (("train_acc", "label head, source train acc"),
                           ("source_val_acc", "source val acc"),
                           ("target_acc", "target test acc (reported only)"),
                           ("domain_acc", "domain head acc")):
            vals = [r.get(key) for r in self.history_]
            if all(v is not None for v in vals):
                ax.plot(ep, vals, label=label)
        for key, label in (("loss_y", "label loss"), ("loss_d", "domain loss")):
            vals = [r.get(key) for r in self.history_]
            if all(v is not None for v in vals) and any(vals):
                ax.plot(ep, vals, "--", label=label)
        twin = ax.twinx()
        twin.plot(ep, [r["lambd"] for r in self.history_], ":", color="k", label="λ")
        twin.set_ylabel("λ")
        twin.set_ylim(0, 1.05)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy / loss")
        ax.set_title(self.title)
        ax.legend(fontsize=6, loc="center right")
        return fig


class FeatureProjection:
    """2-d PCA of source and target features (fitted on both), with the proxy A-distance."""

    def __init__(self, source_feats: np.ndarray, target_feats: np.ndarray, title: str = "") -> None:
        from sklearn.decomposition import PCA

        both = np.concatenate([source_feats, target_feats])
        z = PCA(2, random_state=0).fit_transform(both)
        self.source_ = z[: len(source_feats)]
        self.target_ = z[len(source_feats):]
        self.pad_ = proxy_a_distance(source_feats, target_feats)
        self.title = title

    def plot(self, ax=None):
        fig, ax = _axes(ax)
        ax.scatter(*self.source_.T, s=3, alpha=0.5, label="source")
        ax.scatter(*self.target_.T, s=3, alpha=0.5, label="target")
        ax.set_title(f"{self.title} (proxy A-distance {self.pad_:.2f})", fontsize=8)
        ax.legend(fontsize=7)
        return fig


class DecisionBoundary:
    """Predicted class regions of a model on 2-d inputs, with source and target points."""

    def __init__(self, predict, source_x: np.ndarray, source_y: np.ndarray,
                 target_x: np.ndarray, title: str = "", grid: int = 200) -> None:
        both = np.concatenate([source_x, target_x])
        lo, hi = both.min(0) - 0.5, both.max(0) + 0.5
        xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
        self.xx_, self.yy_ = xx, yy
        self.zz_ = predict(np.c_[xx.ravel(), yy.ravel()].astype(np.float32)).reshape(xx.shape)
        self.source_x, self.source_y, self.target_x, self.title = (source_x, source_y,
                                                                   target_x, title)

    def plot(self, ax=None):
        fig, ax = _axes(ax)
        ax.contourf(self.xx_, self.yy_, self.zz_, alpha=0.25, cmap="coolwarm")
        ax.scatter(*self.source_x.T, c=self.source_y, cmap="coolwarm", s=4, label="source")
        ax.scatter(*self.target_x.T, c="k", s=2, alpha=0.4, label="target")
        ax.set_title(self.title)
        ax.legend(fontsize=7)
        return fig
