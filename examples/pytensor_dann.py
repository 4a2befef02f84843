"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015) in PyTensor, on two moons.

A port of the classic Theano DANN example: a feature extractor ``g_f`` (tanh
layers), a label predictor ``g_y`` (softmax), a domain classifier ``g_d`` (tanh
layer, sigmoid output) behind a gradient reversal layer, and plain SGD updates
compiled into ONE ``pytensor.function`` training step. λ is a symbolic scalar, so
the schedule changes it every step without recompiling.

The source domain is ``sklearn.datasets.make_moons``; the target domain is the same
distribution rotated by 35 degrees (labels kept), as in the paper's toy experiment.

Run it::

    .venv/bin/python examples/pytensor_dann.py            # DANN vs source-only
    .venv/bin/python examples/pytensor_dann.py --steps 3000

The first run compiles the training step with PyTensor's default linker (Numba in
PyTensor 3): about half a minute on a 2-core CPU with a cold cache, then it is cached.

Importable: :func:`make_moons_domains`, :func:`init_params`, :func:`build_model`,
:func:`train`, :func:`main`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from sklearn.datasets import make_moons

import backflip.pytensor as bfp
from backflip.schedules import dann_lambda

FLOAT = "float64"


def make_moons_domains(
    n: int = 300, angle: float = 35.0, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source moons ``(xs, ys)`` and target moons rotated by ``angle`` degrees ``(xt, yt)``."""
    xs, ys = make_moons(n, noise=noise, random_state=seed)
    xt, yt = make_moons(n, noise=noise, random_state=seed + 1)
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    center = np.array([0.5, 0.25])  # rotate about the middle of the two moons
    xt = (xt - center) @ rot.T + center
    return xs.astype(FLOAT), ys.astype(np.int64), xt.astype(FLOAT), yt.astype(np.int64)


def init_params(
    n_in: int = 2, n_hidden: int = 15, n_domain_hidden: int = 15, n_classes: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Glorot-uniform weights and zero biases for g_f (2 tanh layers), g_y and g_d."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(FLOAT)

    return {
        "W_f1": glorot(n_in, n_hidden), "b_f1": np.zeros(n_hidden, FLOAT),
        "W_f2": glorot(n_hidden, n_hidden), "b_f2": np.zeros(n_hidden, FLOAT),
        "W_y": glorot(n_hidden, n_classes), "b_y": np.zeros(n_classes, FLOAT),
        "W_d1": glorot(n_hidden, n_domain_hidden), "b_d1": np.zeros(n_domain_hidden, FLOAT),
        "W_d2": glorot(n_domain_hidden, 1), "b_d2": np.zeros(1, FLOAT),
    }  # fmt: skip


@dataclass
class DANNModel:
    """The compiled functions and the shared weights of one DANN model."""

    params: dict[str, Any]  # name -> pytensor shared variable
    train_step: Any  # (xs, ys, xt, lambd, lr) -> (label_loss, domain_loss), updates params
    loss_and_grads: Any  # (xs, ys, xt, lambd) -> [loss, *grads in params order], no update
    predict: Any  # x -> class labels

    def get_params(self) -> dict[str, np.ndarray]:
        """A copy of the current weights."""
        return {k: v.get_value().copy() for k, v in self.params.items()}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Overwrite the weights in place (the compiled functions stay valid)."""
        for k, v in params.items():
            self.params[k].set_value(np.asarray(v, FLOAT).copy())


def _forward(p: dict[str, Any], x: Any, lambd: Any) -> tuple[Any, Any]:
    """Class probabilities and domain probability (of being target) for inputs ``x``."""
    h = pt.tanh(pt.tanh(x @ p["W_f1"] + p["b_f1"]) @ p["W_f2"] + p["b_f2"])  # g_f
    class_prob = pt.special.softmax(h @ p["W_y"] + p["b_y"], axis=-1)  # g_y
    r = bfp.reverse_gradient(h, lambd)  # GRL: identity forward, -lambd * g backward
    domain_prob = pt.sigmoid(pt.tanh(r @ p["W_d1"] + p["b_d1"]) @ p["W_d2"] + p["b_d2"])[:, 0]
    return class_prob, domain_prob


def dann_loss(p: dict[str, Any], xs: Any, ys: Any, xt: Any, lambd: Any) -> tuple[Any, Any]:
    """Label NLL on the source batch; domain BCE on source (0) and target (1) batches."""
    class_prob, dom_s = _forward(p, xs, lambd)
    _, dom_t = _forward(p, xt, lambd)
    label_loss = -pt.mean(pt.log(class_prob[pt.arange(ys.shape[0]), ys]))
    domain_loss = -(pt.mean(pt.log(1 - dom_s)) + pt.mean(pt.log(dom_t))) / 2
    return label_loss, domain_loss


def build_model(params: dict[str, np.ndarray], mode: str | None = None) -> DANNModel:
    """Compile the training step (one pytensor.function with SGD updates) and helpers."""
    p = {k: pytensor.shared(v.copy(), name=k) for k, v in params.items()}
    xs, xt = pt.matrix("xs", dtype=FLOAT), pt.matrix("xt", dtype=FLOAT)
    ys = pt.vector("ys", dtype="int64")
    lambd, lr = pt.scalar("lambd", dtype=FLOAT), pt.scalar("lr", dtype=FLOAT)
    label_loss, domain_loss = dann_loss(p, xs, ys, xt, lambd)
    loss = label_loss + domain_loss  # the GRL makes g_f maximise the domain loss
    grads = pt.grad(loss, list(p.values()))
    updates = [(v, v - lr * g) for v, g in zip(p.values(), grads, strict=True)]
    train_step = pytensor.function(
        [xs, ys, xt, lambd, lr], [label_loss, domain_loss], updates=updates, mode=mode
    )
    loss_and_grads = pytensor.function([xs, ys, xt, lambd], [loss, *grads], mode=mode)
    class_prob, _ = _forward(p, xs, 0.0)
    predict = pytensor.function([xs], pt.argmax(class_prob, axis=-1), mode=mode)
    return DANNModel(p, train_step, loss_and_grads, predict)


def train(
    steps: int = 1500,
    lr: float = 0.5,
    adapt: bool = True,
    batch_size: int = 64,
    seed: int = 0,
    model: DANNModel | None = None,
) -> dict[str, float]:
    """Train on the moons from fresh weights; return source and target accuracy.

    ``adapt=False`` trains source-only (λ = 0: the domain classifier learns but its
    gradient never reaches g_f). λ follows the paper's schedule ``dann_lambda(p)``.
    Pass a ``model`` from :func:`build_model` to reuse its compiled functions (its
    weights are reset first): λ is symbolic, so DANN and source-only share them.
    """
    xs, ys, xt, yt = make_moons_domains(seed=seed)
    if model is None:
        model = build_model(init_params(seed=seed))
    else:
        model.set_params(init_params(seed=seed))
    rng = np.random.default_rng(seed)
    for step in range(steps):
        # schedule: λ from 0 towards 1 (0 for source-only)
        lambd = dann_lambda(step / steps) if adapt else 0.0
        # batch: the same number of source and target points
        i = rng.integers(0, len(xs), batch_size)
        j = rng.integers(0, len(xt), batch_size)
        # forward, losses, backward and SGD step: one compiled call
        model.train_step(xs[i], ys[i], xt[j], lambd, lr)
    return {
        "source_acc": float(np.mean(model.predict(xs) == ys)),
        "target_acc": float(np.mean(model.predict(xt) == yt)),
    }


def main(argv: list[str] | None = None) -> int:
    """Train DANN and a source-only baseline; print their accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = build_model(init_params(seed=args.seed))  # compiled once, used by both runs
    for name, adapt in (("source-only", False), ("DANN", True)):
        acc = train(args.steps, args.lr, adapt=adapt, seed=args.seed, model=model)
        print(f"{name:12s} source acc {acc['source_acc']:.3f}  target acc {acc['target_acc']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
