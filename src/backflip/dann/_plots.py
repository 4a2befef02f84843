"""Plots of a run (scikit-learn style: compute once in the constructor, ``plot(ax=None)``).

* :class:`TrainingCurves`: accuracy and loss per epoch (label head, domain head), with λ;
* :class:`FeatureProjection`: PCA of source vs target features;
* :class:`DecisionBoundary`: a 2-d classifier's regions with both domains;
* :func:`proxy_a_distance`: ``2 (1 - 2 err)`` of a linear domain classifier on features
  (Ben-David et al. 2007), small when the features do not tell the domains apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backflip._optional import require

__all__ = ["DecisionBoundary", "FeatureProjection", "TrainingCurves", "proxy_a_distance"]


def _pyplot(purpose: str):
    # matplotlib's pyplot on the Agg backend (unless one was chosen), or one clear error
    require("matplotlib", purpose=purpose).use("Agg", force=False)
    return require("matplotlib.pyplot", purpose=purpose)


def _axes(ax, purpose: str):
    plt = _pyplot(purpose)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        return fig, ax
    return ax.figure, ax


#: the inverse regularisation strengths tried for the domain classifier of the PAD
PAD_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def proxy_a_distance(source_feats: np.ndarray, target_feats: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` of a linear domain classifier, as Ganin et al. compute it.

    Equal sample counts per domain (the larger one subsampled), standardised features,
    half of the samples to train a logistic regression, a quarter to choose its
    regularisation ``C`` among :data:`PAD_C` and the last quarter to measure the test
    error ``err``. 0: the domains are indistinguishable to a linear classifier, 2:
    separable. (With ``C`` fixed at 1, features of a few hundred dimensions were always
    separable: 1.9-2.0 whatever the method.)

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(200, 2))
    >>> round(proxy_a_distance(a, a + 10.0), 2), proxy_a_distance(a, rng.normal(size=(200, 2))) < 0.5
    (2.0, True)
    """
    linear_model = require("sklearn.linear_model", purpose="proxy_a_distance")

    rng = np.random.default_rng(seed)
    n = min(len(source_feats), len(target_feats))
    xs = np.asarray(source_feats, np.float64)[rng.permutation(len(source_feats))[:n]]
    xt = np.asarray(target_feats, np.float64)[rng.permutation(len(target_feats))[:n]]
    x = np.concatenate([xs, xt]).reshape(2 * n, -1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    y = np.r_[np.zeros(n), np.ones(n)]
    order = rng.permutation(2 * n)
    tr, va, te = np.split(order, [n, n + n // 2])

    def fit(c: float):
        return linear_model.LogisticRegression(C=c, max_iter=2000).fit(x[tr], y[tr])

    best = min(PAD_C, key=lambda c: float((fit(c).predict(x[va]) != y[va]).mean()))
    err = float((fit(best).predict(x[te]) != y[te]).mean())
    return 2.0 * (1.0 - 2.0 * min(err, 0.5))


class TrainingCurves:
    """Per-epoch accuracy (with λ where the adversary acts) and loss of both heads.

    ``plot(ax=None)`` draws accuracy on one axes (λ on its right axis, for ``dann``
    histories) and the losses on a second; pass ``ax`` as a pair of Axes to draw into
    your own figure.

    >>> h = [{"epoch": 1, "train_acc": .5, "target_acc": .4, "source_val_acc": .5,
    ...       "domain_acc": .9, "loss_y": 1.0, "loss_transfer": .6, "lambd": 0.0}]
    >>> TrainingCurves(h).plot().axes[0].get_xlabel()
    'epoch'
    """

    def __init__(self, history: list[dict[str, Any]], title: str = "") -> None:
        self.history_ = history
        self.title = title

    def _series(self, keys: tuple[tuple[str, str], ...]):
        for key, label in keys:
            vals = [r.get(key) for r in self.history_]
            if all(v is not None for v in vals):
                yield vals, label

    def plot(self, ax=None):
        plt = _pyplot("TrainingCurves.plot")
        from matplotlib.ticker import MaxNLocator

        if ax is None:
            fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
        else:
            acc_ax, loss_ax = ax
            fig = acc_ax.figure
        ep = [r["epoch"] for r in self.history_]
        style = {"marker": "o", "ms": 3} if len(ep) <= 12 else {}
        for vals, label in self._series((
                ("train_acc", "label head, source train"), ("source_val_acc", "source val"),
                ("target_acc", "target test (reported only)"),
                ("domain_acc", "domain head (0.5: domains confused)"))):
            acc_ax.plot(ep, vals, label=label, **style)
        handles, labels = acc_ax.get_legend_handles_labels()
        if all(r.get("lambd") is not None for r in self.history_):  # the method's λ acts
            lambd = [r["lambd"] for r in self.history_]
            twin = acc_ax.twinx()
            handles += twin.plot(ep, lambd, ":", color="k", **style)
            labels.append("λ (right axis)")
            twin.set_ylabel("λ")
            twin.set_ylim(0, 1.05 * max(1.0, *lambd))
        acc_ax.set_ylim(0, 1.02)
        acc_ax.set_ylabel("accuracy")
        acc_ax.legend(handles, labels, fontsize=6.5, loc="lower right")
        for vals, label in self._series((
                ("loss_y", "label loss"), ("loss_transfer", "transfer term (unweighted)"),
                ("loss_ent", "target entropy (unweighted)"),
                ("loss_vat", "target VAT (unweighted)"))):
            if any(vals):
                loss_ax.plot(ep, vals, label=label, **style)
        loss_ax.set_ylabel("loss")
        loss_ax.legend(fontsize=6.5)
        for a in (acc_ax, loss_ax):
            a.set_xlabel("epoch")
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(self.title, fontsize=10)
        return fig


class FeatureProjection:
    """2-d PCA of source and target features (fitted on both), with the proxy A-distance.

    ``pad_`` is the proxy A-distance of the two PCA coordinates drawn (what the plot shows:
    0 where the domains overlap there), ``pad_full_`` that of all the features: on the
    768 features of the MNIST nets a linear classifier separates the domains (1.9-2.0)
    whatever the method, even where the plot shows them mixed, so the full figure alone
    told nothing about the alignment.
    """

    def __init__(self, source_feats: np.ndarray, target_feats: np.ndarray, title: str = "") -> None:
        decomposition = require("sklearn.decomposition", purpose="FeatureProjection (PCA)")

        both = np.concatenate([source_feats, target_feats])
        z = decomposition.PCA(2, random_state=0).fit_transform(both)
        self.dim_ = int(np.asarray(source_feats).reshape(len(source_feats), -1).shape[1])
        self.source_ = z[: len(source_feats)]
        self.target_ = z[len(source_feats):]
        self.pad_ = proxy_a_distance(self.source_, self.target_)
        self.pad_full_ = proxy_a_distance(source_feats, target_feats)
        self.title = title

    def plot(self, ax=None):
        fig, ax = _axes(ax, "FeatureProjection.plot")
        ax.scatter(*self.source_.T, s=3, alpha=0.5, label="source")
        ax.scatter(*self.target_.T, s=3, alpha=0.5, label="target")
        ax.set_title(f"{self.title}\nproxy A-distance {self.pad_:.2f} in this plane, "
                     f"{self.pad_full_:.2f} in all {self.dim_} features", fontsize=8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7, markerscale=3)
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
        fig, ax = _axes(ax, "DecisionBoundary.plot")
        k = int(max(self.source_y.max(), self.zz_.max())) + 1
        colours = [f"C{c % 10}" for c in range(k)]
        ax.contourf(self.xx_, self.yy_, self.zz_, levels=np.arange(k + 1) - 0.5, alpha=0.25,
                    colors=colours)
        for c in range(k):
            pts = self.source_x[self.source_y == c]
            if len(pts):
                ax.scatter(*pts.T, color=colours[c], s=4, label=f"source, class {c}")
        ax.scatter(*self.target_x.T, c="k", s=2, alpha=0.4, label="target (unlabelled)")
        ax.set_title(f"{self.title}\nshaded: the predicted class, in its colour", fontsize=8)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.legend(fontsize=6.5, markerscale=2)
        return fig
