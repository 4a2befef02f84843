"""skada's deep DA methods vs ours on the preset runs: target accuracy and seconds per epoch.

For each preset (in its ``--quick`` settings) and seed, every method is trained twice,
one run right after the other on the same machine:

* **ours**: ``train(experiment_config(preset, method, quick=True, seed=s))``;
* **skada** 0.6 (``skada.deep``, on skorch): the same run as far as skada lets it be.
  ``backflip.dann._prepare.prepare`` builds the run exactly as ``train`` does, and skada
  gets what it built: the source training part (validation split removed), the target
  training set and the preset transforms; the same initial network (seeded alike, its
  ``Standardize`` fitted on the source training part, NHWC for images) and the method's
  own heads as ours initialises them (CDAN's domain head, MDD's adversary); the same
  batch (per domain), SGD with momentum 0.9, the preset's lr annealed by
  ``dann_learning_rate`` and λ(p) ramped to ``config.lambd_peak`` by ``dann_lambda`` (a
  skorch callback, per batch), and the same number of epochs of the same number of
  steps (one pass over the larger domain; :data:`NOTES` says where they differ).

Each method's regularisation and what could not be matched: :data:`NOTES`, printed
under the table. skada's domain heads end in a softmax over one logit (a constant,
no adversarial gradient), so DANN and CDAN get bench/train.py's working head (skada's
GRL, our domain head, BCE-with-logits). The networks with per-domain batch norm
(``mnist-bn``) need [source half; target half] batches; skada's sampler interleaves the
domains, so the modules ours runs two-domain (features, classifier, DANN's
discriminator) see the batch reordered into halves and hand it back in skada's order
(:class:`_Halves`; the interleaving is checked on every batch).

A second table steps both from identical weights on identical batches (seed 0, 20
steps from p = 0.5, :func:`same_batches`): where the definitions line up the losses and
weights agree to float rounding, so accuracy gaps there come from the data order alone.

Target accuracy: the final model on the first ``eval_limit`` target test samples (ours'
headline ``target_acc``; the same samples for skada), mean +- std (ddof 0) over seeds.
Seconds per epoch: the median epoch of each run (ours: history ``seconds`` minus that
epoch's evaluation, timed; skada: skorch's ``dur``, which has no evaluation), then the
median over seeds. One torch thread.

    .venv/bin/python bench/skada_methods.py [--quick] [--presets adult-sex,moons] [--seeds N]

Prints a Markdown table and writes bench/out/skada_methods.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _timing import machine_meta
from backflip.dann import train
from backflip.dann._domain_norm import DomainBatchNorm, split_domains
from backflip.dann._evaluate import predict
from backflip.dann._experiments import experiment_config
from backflip.dann._prepare import Setup, prepare
from backflip.schedules import dann_lambda, dann_learning_rate
from train import _LogitDomainHead, _SkadaBase

PRESETS = ("adult-sex", "mnist-mfeat", "syndigits-mnist", "moons")
METHODS = ("source-only", "dann", "cdan", "mdd", "mcc", "coral")

#: What each skada run matches of ours, and what it cannot.
NOTES = {
    "source-only": "skada SourceOnly: CE on the source. Its loader passes over the source "
                   "only, so its epoch is len(source) // batch steps where ours is one pass "
                   "over the larger domain (fewer steps where the target is larger: "
                   "syndigits-mnist, moons); lr annealed over its own steps.",
    "dann": "reg 0.5 (skada adds BCE(source) + BCE(target), two means; ours is the mean "
            "over the joined batch), GRL alpha = λ(p) to 1: the same loss and gradients. "
            "Domain head: our discriminator as a logit + BCEWithLogitsLoss.",
    "cdan": "reg 0.5 as dann, GRL alpha = λ(p) to 1, our CDAN domain head (3 layers, raw "
            "logit, BCEWithLogitsLoss) with its input size: max_features = F*C where "
            "F*C <= 4096, else 1024 (ours: the full map up to 4096 columns, else a "
            "randomized map of 1024). Not matched: skada conditions on the raw class "
            "logits (ours: softmax probabilities), not detached, so the reversed gradient "
            "also reaches the classifier through them. Where the map is randomized (the "
            "mnist-bn presets) skada redraws its matrices every step with "
            "torch.random.manual_seed(42), reseeding torch's global RNG: its sampler then "
            "visits each domain in one fixed order in every epoch after the first (ours: "
            "fixed matrices from the run's seed, fresh orders).",
    "mdd": "reg 1, GRL alpha = λ(p) to 0.1 (ours' default), margin γ = 4, our adversary "
           "(a fresh copy of the classifier). Not matched: skada's target term smooths the "
           "probabilities (0.1) and indexes them as p[..., ŷ], an N x N mean over every "
           "(sample, label) pair instead of each sample's own label; ours clamps both terms "
           "at 1e-6.",
    "mcc": "reg = λ(p) to 1 per batch (ours' weight), temperature T = 2.5 (skada's default "
           "is 1). Not matched: skada's uncertainty weights are not detached.",
    "coral": "reg = λ(p) to 1 per batch (ours' weight); the same loss "
             "(||C_s - C_t||_F^2 / (4 d^2), unbiased covariances of the flattened features).",
}


class _Halves(nn.Module):
    """Run ``module`` on a skada batch reordered as [source half; target half].

    skada's DomainBalancedSampler yields source, target, source, ... (checked per batch
    by the schedule); a DomainBatchNorm normalises each domain by its own statistics
    only on a two-domain batch in halves (``split_domains``), as ``DANN.forward`` makes
    it. The rows go back in skada's order, so its masks and the feature hook line up.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.module(x)
        order = torch.cat([torch.arange(0, len(x), 2), torch.arange(1, len(x), 2)])
        with split_domains(self.module):
            out = self.module(x[order])
        return out[torch.argsort(order)]


class _AdversaryHead(_LogitDomainHead):
    # MDD's adversary behind skada's GRL: class logits (N, C), not one domain logit.
    def forward(self, x, sample_weight=None):
        from skada.deep.modules import GradientReversalLayer

        return self.discriminator(GradientReversalLayer.apply(x, self.alpha))


def _schedule(cfg, total: int, heads: list[nn.Module], weighted: bool, interleaved: bool):
    # Our schedules per batch: lr(p) on the optimizer, λ(p) on the heads' GRL (alpha) or
    # as the criterion's reg; p = step / total, as ours.
    from skorch.callbacks import Callback

    class _Schedule(Callback):
        def initialize(self):
            self.step = 0
            return self

        def on_batch_begin(self, net, batch=None, training=False, **kwargs):
            if not training:
                return
            if interleaved:  # what _Halves relies on
                d = batch[0]["sample_domain"]
                if not (bool((d[0::2] >= 0).all()) and bool((d[1::2] < 0).all())):
                    raise RuntimeError("skada's batch does not alternate source and target")
            p = min(self.step / total, 1.0)
            lambd = dann_lambda(p, cfg.gamma, cfg.lambd_peak)
            for head in heads:
                head.alpha = lambd
            if weighted:
                net.criterion_.reg = lambd
            for g in net.optimizer_.param_groups:
                g["lr"] = dann_learning_rate(p, cfg.lr)
            self.step += 1

    return _Schedule()


def _skada_net(method: str, run: Setup, n_source: int):
    """skada's net for ``method`` over ``run``'s network: ``(net, base module, epoch steps)``."""
    import skada.deep as sd

    cfg, raw, heads = run.config, run.raw, run.heads
    two_domain = method != "source-only"
    halve = two_domain and any(isinstance(m, DomainBatchNorm) for m in raw.modules())

    def wrap(module: nn.Module) -> nn.Module:
        return _Halves(module) if halve else module

    base = _SkadaBase(wrap(raw.features), wrap(raw.classifier))
    logit = {"domain_criterion": nn.BCEWithLogitsLoss()}
    if method == "source-only":
        build, head, kwargs, weighted = sd.SourceOnly, None, {}, False
    elif method == "dann":
        head = _LogitDomainHead(wrap(raw.discriminator))
        build, kwargs, weighted = sd.DANN, {"reg": 0.5, "domain_classifier": head, **logit}, False
    elif method == "cdan":
        # skada maps to max_features columns at random where F*C exceeds it, else in
        # full: ours' head width (F*C, or the randomized map's 1024) gives ours' choice
        max_features = heads.discriminator[0].in_features
        head = _LogitDomainHead(heads.discriminator)
        build, weighted = sd.CDAN, False
        kwargs = {"reg": 0.5, "domain_classifier": head, "max_features": max_features, **logit}
    elif method == "mdd":
        head = _AdversaryHead(heads.adversary)  # ours runs it on the joined batch: no halves
        build, kwargs, weighted = sd.MDD, {"reg": 1.0, "gamma": cfg.margin,
                                           "disc_classifier": head}, False
    elif method == "mcc":
        build, head, kwargs, weighted = sd.MCC, None, {"reg": 0.0, "T": cfg.temperature}, True
    elif method == "coral":
        build, head, kwargs, weighted = sd.DeepCoral, None, {"reg": 0.0}, True
    else:
        raise ValueError(f"no skada counterpart for {method!r}")
    steps = (max(n_source, len(run.inputs.target)) if two_domain else n_source) // cfg.batch_size
    callback = _schedule(cfg, steps * cfg.epochs, [head] if head is not None else [], weighted,
                         halve)
    net = build(base, layer_name="features" if method != "source-only" else None, **kwargs,
                batch_size=cfg.batch_size, max_epochs=cfg.epochs, train_split=None,
                optimizer=torch.optim.SGD, lr=cfg.lr, optimizer__momentum=cfg.momentum,
                optimizer__weight_decay=cfg.weight_decay, callbacks=[callback], verbose=0,
                device="cpu")
    return net, base, steps


def run_skada(preset: str, method: str, seed: int) -> dict:
    """One skada run on the data, network and recipe of our run of ``(preset, method, seed)``."""
    cfg = experiment_config(preset, method, quick=True, seed=seed, progress=False, plots=False)
    run = prepare(cfg)  # train()'s set-up: data, seeded network, fitted Standardize, heads
    src, tgt = run.inputs.source, run.inputs.target
    xs, ys = src.read(np.arange(len(src)))
    xt, _ = tgt.read(np.arange(len(tgt)))
    net, base, steps = _skada_net(method, run, len(src))
    x = np.ascontiguousarray(np.concatenate([xs, xt]), np.float32)
    y = np.concatenate([ys, np.full(len(xt), -1)])  # target labels masked (skada: -1)
    domain = np.concatenate([np.ones(len(xs), int), -np.ones(len(xt), int)])
    net.fit(x, y, sample_domain=domain)
    assert net.module_.base_module_ is base  # trained in place: run.raw holds the weights
    raw = run.raw.eval()  # DomainBatchNorm: the statistics ours evaluates with (prepare set them)
    logits, _ = predict(raw, run.ev.target_test_x)
    acc = float((logits.argmax(1) == run.ev.target_test_y).mean())
    epoch_s = [float(s) for s in net.history[:, "dur"]]
    return {"target_acc": acc, "epoch_s": epoch_s, "median_epoch_s": statistics.median(epoch_s),
            "steps_per_epoch": steps, "target_test_n": len(run.ev.target_test_y)}


def same_batches(preset: str, method: str, steps: int = 20) -> dict:
    """Both steps on identical batches from identical weights, mid-run (p from 0.5).

    Ours as ``train`` steps (``Adapted`` forward, SGD, λ and lr of p); skada's
    ``net.train_step`` on the same samples, interleaved as its sampler yields them, with
    the schedule callback applied. Returns the largest relative loss difference over the
    steps and the largest parameter difference after them: ~1e-7 where the definitions
    line up, larger where :data:`NOTES` says they do not.
    """
    cfg = experiment_config(preset, method, quick=True, seed=0, progress=False, plots=False)
    run = prepare(cfg)
    ours = copy.deepcopy(run.adapted)  # the same weights and heads, trained apart
    opt = torch.optim.SGD(ours.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    src, tgt = run.inputs.source, run.inputs.target
    net, _, epoch_steps = _skada_net(method, run, len(src))
    net.initialize()
    schedule = net.callbacks[0]
    total = epoch_steps * cfg.epochs
    schedule.step = start = total // 2
    xs, ys = (torch.as_tensor(a) for a in src.read(np.arange(len(src))))
    xt = torch.as_tensor(tgt.read(np.arange(len(tgt)))[0])
    gen = torch.Generator().manual_seed(0)
    n, two = cfg.batch_size, method != "source-only"
    loss_diff = 0.0
    for step in range(start, start + steps):
        i, j = torch.randint(len(xs), (n,), generator=gen), torch.randint(len(xt), (n,), generator=gen)
        p = step / total
        for g in opt.param_groups:
            g["lr"] = dann_learning_rate(p, cfg.lr)
        ours.set_lambd(dann_lambda(p, cfg.gamma, cfg.lambd_peak))
        loss = ours(xs[i], ys[i], xt[j], None, step)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if two:  # skada's order: source, target, source, ...
            x = torch.stack([xs[i], xt[j]], 1).flatten(0, 1)
            y = torch.stack([ys[i], torch.full((n,), -1)], 1).flatten()
            d = torch.tensor([1, -1]).repeat(n)
        else:
            x, y, d = xs[i], ys[i], torch.ones(n, dtype=torch.long)
        batch = ({"X": x, "sample_domain": d, "sample_idx": torch.arange(len(x))}, y)
        schedule.on_batch_begin(net, batch=batch, training=True)
        theirs = net.train_step(batch)["loss"].item()
        loss_diff = max(loss_diff, abs(theirs - loss.item()) / abs(loss.item()))
    params = [(a, b) for a, b in zip(ours.parameters(), run.adapted.parameters(), strict=True)]
    return {"steps": steps, "from_p": start / total, "loss_max_rel_diff": loss_diff,
            "param_max_abs_diff": max(float((a - b).detach().abs().max()) for a, b in params)}


@contextlib.contextmanager
def _timed_evaluate(seconds: list[float]):
    # Time train()'s per-epoch evaluation (skorch's dur has none, train_split=None).
    from backflip.dann import _train

    evaluate = _train.evaluate

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = evaluate(*args, **kwargs)
        seconds.append(time.perf_counter() - t0)
        return out

    _train.evaluate = timed
    try:
        yield
    finally:
        _train.evaluate = evaluate


def run_ours(preset: str, method: str, seed: int) -> dict:
    """Our run of ``(preset, method, seed)``: final target accuracy, epoch seconds."""
    cfg = experiment_config(preset, method, quick=True, seed=seed, progress=False, plots=False)
    eval_s: list[float] = []
    with _timed_evaluate(eval_s):
        res = train(cfg)
    raw = [float(r["seconds"]) for r in res.history]
    epoch_s = [r - e for r, e in zip(raw, eval_s, strict=True)]
    return {"target_acc": res.target_accuracy, "epoch_s": epoch_s, "eval_s": eval_s,
            "epoch_with_eval_s": raw, "median_epoch_s": statistics.median(epoch_s),
            "target_test_n": res.history[-1]["target_test_n"]}


def _summary(runs: list[dict]) -> dict:
    accs = [r["target_acc"] for r in runs]
    return {"acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)), "seeds": len(accs),
            "median_epoch_s": statistics.median(r["median_epoch_s"] for r in runs)}


def _acc(s: dict | str) -> str:
    if isinstance(s, str):
        return s
    if s["seeds"] == 1:
        return f"{s['acc_mean']:.4f}"
    return f"{s['acc_mean']:.4f} ± {s['acc_std']:.4f}"


def _measure(preset: str, method: str, seeds: int) -> dict:
    # Every seed's two runs (ours, then skada: side by side, same machine load), then the
    # identical-batch check of the two steps.
    ours, skada, failed = [], [], None
    for seed in range(seeds):
        ours.append(run_ours(preset, method, seed))
        if failed is None:
            try:
                skada.append(run_skada(preset, method, seed))
            except Exception as err:  # an API mismatch or a crash: say so, go on
                failed = f"failed: {type(err).__name__}: {err}"
        print(f"{preset} {method} seed {seed}: ours {ours[-1]['target_acc']:.4f}, "
              + (failed or f"skada {skada[-1]['target_acc']:.4f}"), flush=True)
    try:
        check = same_batches(preset, method)
    except Exception as err:
        check = f"failed: {type(err).__name__}: {err}"
    return {"preset": preset, "method": method, "ours": _summary(ours),
            "skada": failed or _summary(skada), "same_batches": check, "ours_runs": ours,
            "skada_runs": skada}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="adult-sex only, one seed (< 3 minutes)")
    parser.add_argument("--presets", default=None,
                        help=f"comma-separated presets (default: {','.join(PRESETS)})")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated methods (default: {','.join(METHODS)})")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    presets = (args.presets.split(",") if args.presets
               else ("adult-sex",) if args.quick else PRESETS)
    methods = args.methods.split(",") if args.methods else METHODS
    t_start = time.perf_counter()
    rows = [_measure(preset, method, args.seeds) for preset in presets for method in methods]
    wall = time.perf_counter() - t_start

    print(f"\nskada {_skada_version()} vs ours, presets in their --quick settings, "
          f"{args.seeds} seed(s) each; one torch thread\n")
    print("| preset | method | ours acc | skada acc | ours s/epoch | skada s/epoch |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        o, s = r["ours"], r["skada"]
        n = r["ours_runs"][0]["target_test_n"]
        skada_s = "" if isinstance(s, str) else f"{s['median_epoch_s']:.2f}"
        print(f"| {r['preset']} ({n} test) | {r['method']} | {_acc(o)} | {_acc(s)} | "
              f"{o['median_epoch_s']:.2f} | {skada_s} |")
    print("\nacc: final-epoch target accuracy on the first eval_limit target test samples"
          + (", mean ± std (ddof 0) over seeds" if args.seeds > 1 else ", one seed (0)")
          + ". s/epoch: median epoch, then median over seeds; ours without its per-epoch "
          "evaluation (skorch's dur has none).\n")
    print("Identical batches and weights (seed 0, 20 steps from p = 0.5): how far the two "
          "steps drift apart\n")
    print("| preset | method | max relative loss difference | max parameter difference |")
    print("|---|---|---:|---:|")
    for r in rows:
        c = r["same_batches"]
        cells = (f"{c} | " if isinstance(c, str) else
                 f"{c['loss_max_rel_diff']:.1e} | {c['param_max_abs_diff']:.1e}")
        print(f"| {r['preset']} | {r['method']} | {cells} |")
    print("\nMatched and not matched, per method:")
    for method in methods:
        print(f"- {method}: {NOTES[method]}")
    meta = machine_meta({"presets": list(presets), "methods": list(methods),
                         "seeds": args.seeds, "quick": args.quick, "threads": 1,
                         "torch": torch.__version__, "skada": _skada_version(), "wall_s": wall})
    out = Path(__file__).parent / "out" / "skada_methods.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "notes": NOTES, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out} ({wall:.0f} s)")


def _skada_version() -> str:
    try:
        from importlib.metadata import version

        return version("skada")
    except Exception:  # not installed: every skada row says why
        return "not installed"


if __name__ == "__main__":
    main()
