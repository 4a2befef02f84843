"""The ``backflip run`` presets: every method over seeds, a table, results.json, report, plots."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backflip._errors import BackflipValueError
from backflip._optional import require
from backflip.dann._config import METHODS, TrainConfig
from backflip.dann._methods import get_method
from backflip.dann._selection import CRITERIA, pick, pick_run

if TYPE_CHECKING:
    from backflip.dann._train import TrainingStopped, TrainResult

__all__ = ["EXPERIMENTS", "RUN_METHODS", "VARIANTS", "VAT_SETTINGS", "experiment_config",
           "report", "run_experiment", "table"]

# name -> (full settings, --quick overrides). Headline numbers are final-epoch, never selected.
EXPERIMENTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "moons": ({"source": "moons", "target": "moons-rotated", "arch": "moons", "epochs": 40,
               "batch_size": 32, "lr": 0.05, "hidden": 128, "threads": 1, "eval_limit": 500,
               "min_epoch_steps": 1},
              {}),  # already seconds; fewer epochs do not adapt
    # The paper's MNIST net with per-domain batch norm (mnist-bn): 0.92 on our MNIST-M in
    # 3 epochs where the plain net reached 0.71-0.78 in 10 and collapsed on one seed of 3.
    "mnist-mnistm": ({"source": "mnist", "target": "mnistm", "source_transform": "rgb",
                      "arch": "mnist-bn", "epochs": 3, "batch_size": 64, "threads": 1},
                     {"epochs": 3, "limit": 20000, "eval_limit": 1000}),
    # The MNIST net with per-domain batch norm on SynDigits shrunk to 28x28: the paper's
    # 32x32 net learned nothing in the steps a 2-core CPU affords (0.06-0.12 on MNIST).
    "syndigits-mnist": ({"source": "syndigits", "target": "mnist",
                         "source_transform": "resize28", "target_transform": "rgb",
                         "arch": "mnist-bn", "epochs": 3, "batch_size": 64, "threads": 1},
                        {"epochs": 2, "limit": 4000, "eval_limit": 1000, "min_epoch_steps": 1}),
    # Real second domains from UCI, fetched as MNIST is (backflip data fetch NAME): the
    # MNIST net with per-domain batch norm, as above, and the trainer's defaults.
    "mnist-mfeat": ({"source": "mnist", "target": "mfeat", "target_transform": "resize28",
                     "arch": "mnist-bn", "epochs": 3, "threads": 1},
                    {"epochs": 2, "limit": 10000, "eval_limit": 1000}),
    "mfeat-mnist": ({"source": "mfeat", "target": "mnist", "source_transform": "resize28",
                     "arch": "mnist-bn", "epochs": 3, "threads": 1},
                    {"epochs": 2, "limit": 10000, "eval_limit": 1000}),
    "mnist-pendigits": ({"source": "mnist", "target": "pendigits", "arch": "mnist-bn",
                         "epochs": 3, "threads": 1},
                        {"epochs": 2, "limit": 10000, "eval_limit": 1000}),
    # A tabular covariate shift: census income of men (source) and women (target), the
    # built-in mlp sized to the data; everything else the trainer's defaults.
    "adult-sex": ({"source": "adult-male", "target": "adult-female", "threads": 1},
                  {"epochs": 5}),
}


#: ``backflip run --methods`` names beyond the trainer's: (trainer method, settings).
#: ``entropy`` and ``vat`` are the controls that tell whether the GRL or the added term
#: does the work (``lambd_max`` 0: the domain head trains, the GRL passes nothing back).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dann+entropy": ("dann", {"target_entropy": 0.1}),
    "entropy": ("dann", {"target_entropy": 0.1, "lambd_max": 0.0}),
    "dann+vat": ("dann", {}),  # with the preset's VAT_SETTINGS
    "vat": ("dann", {"lambd_max": 0.0}),
}
#: The target-VAT weight and radius (in the preset's input units) of ``dann+vat`` and
#: ``vat``. The image presets' weights were picked in a session whose figures for the
#: choice were lost; docs/results.md has the three-seed runs of exactly these settings
#: (MNIST -> MNIST-M: dann+vat 0.921 against dann 0.911; SynDigits -> MNIST: dann+vat
#: 0.623 and vat alone 0.799 against source-only 0.717; moons: both 0.996).
VAT_SETTINGS: dict[str, dict[str, float]] = {
    "moons": {"target_vat": 1.0, "vat_eps": 0.25},  # noise 0.1, the moons 1 apart
    "mnist-mnistm": {"target_vat": 0.01, "vat_eps": 1.0},  # pixels in [0, 1], 3x28x28
    "syndigits-mnist": {"target_vat": 0.1, "vat_eps": 1.0},
}
#: Every name ``backflip run --methods`` accepts.
RUN_METHODS = (*METHODS, *VARIANTS)
_LABELS = {"target-only": "target-only (upper bound, uses target labels)",
           "dann+entropy": "dann+entropy (target entropy 0.1)",
           "entropy": "entropy (target entropy 0.1, no adversarial term)",
           "dann+vat": "dann+vat (virtual adversarial training on the target)",
           "vat": "vat (target VAT, no adversarial term)"}


def experiment_config(name: str, method: str, *, quick: bool = False, seed: int = 0,
                      **overrides: Any) -> TrainConfig:
    """The TrainConfig of one preset run; ``method`` is one of :data:`RUN_METHODS`.

    >>> experiment_config("mnist-mnistm", "dann", quick=True).epochs
    3
    >>> cfg = experiment_config("moons", "entropy")
    >>> (cfg.method, cfg.target_entropy, cfg.lambd_max)
    ('dann', 0.1, 0.0)
    """
    if name not in EXPERIMENTS:
        raise BackflipValueError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}, "
            "composite-zero."
        )
    full, fast = EXPERIMENTS[name]
    if method in ("dann+vat", "vat") and name not in VAT_SETTINGS:
        raise BackflipValueError(
            f"{method} needs a VAT radius in the units of {name}'s inputs, and this preset "
            f"has none; presets with one: {', '.join(VAT_SETTINGS)}. Use backflip train with "
            "--target-vat and --vat-eps instead."
        )
    vat = VAT_SETTINGS[name] if method in ("dann+vat", "vat") else {}
    method, settings = VARIANTS.get(method, (method, {}))
    values = {**full, **(fast if quick else {}), **settings, **vat, "method": method,
              "seed": seed, **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict(values)


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "runs": values}


def run_experiment(name: str, *, quick: bool = False, seeds: int = 1, out: str | Path = "runs",
                   device: str = "cpu", progress: bool = True, plots: bool = True,
                   methods: tuple[str, ...] = METHODS, resume: bool = False) -> dict[str, Any]:
    """Train every method for ``seeds`` seeds; write results.json, report.md and plots.

    Returns the results dict: ``{"experiment": name, "methods": {method:
    {"target_accuracy": {"mean", "std", "runs"}, ...}}, ...}``. A collapsed seed is
    counted at the accuracy it fell to; a NaN or signal stop writes the files for the
    runs that finished (with ``"stopped": {"method", "seed", "reason"}``), then raises
    :class:`TrainingStopped`.

    ``resume=True`` continues such a sweep in the same ``out``: each run resumes from its
    checkpoint (``out/runs/METHOD-seedS/checkpoint.pt``), so a finished run is read back
    without training, the interrupted one continues exactly where it stopped and the
    runs not begun start afresh; the results equal those of an uninterrupted sweep.
    ``seconds`` per run is its training time (the sum of its epochs' seconds), so a run
    read back keeps the time it took.

    Bad arguments fail before any training:

    >>> run_experiment("moons", seeds=0)
    Traceback (most recent call last):
    ...
    backflip...BackflipValueError: --seeds must be >= 1; got 0.
    >>> run_experiment("no-such-preset")
    Traceback (most recent call last):
    ...
    backflip...BackflipValueError: unknown experiment 'no-such-preset'; choose one of ...
    """
    if seeds < 1:
        raise BackflipValueError(f"--seeds must be >= 1; got {seeds}.")
    if name == "composite-zero" and resume:
        raise BackflipValueError(
            "composite-zero keeps no checkpoints, so --resume cannot continue it; run it "
            "again without --resume (the quick setting takes about a minute)."
        )
    if name == "composite-zero":
        from backflip.dann._composite import run_composite_zero

        return run_composite_zero(quick=quick, seeds=seeds, out=out, device=device,
                                  progress=progress)
    experiment_config(name, "dann")  # unknown names fail before any work
    # every run needs scikit-learn (moons, model selection), progress bars tqdm, plots
    # matplotlib: a missing one fails here too, before any training, naming the extra
    for module in ("sklearn", *(("tqdm",) if progress else ()), *(("matplotlib",) if plots else ())):
        require(module, purpose="run_experiment (backflip run)")
    from backflip.dann._train import TrainingStopped, train  # torch: only once work starts

    out = Path(out)
    results: dict[str, Any] = {"experiment": name, "quick": quick, "methods": {}}
    kept: dict[str, TrainResult] = {}
    for method in methods:
        accs, picks, secs, collapsed, finals = [], [], [], [], []
        n_test = None
        for seed in range(seeds):
            cfg = experiment_config(name, method, quick=quick, seed=seed, device=device,
                                    out=str(out / "runs" / f"{method}-seed{seed}"),
                                    progress=progress, resume=resume)
            try:
                res = train(cfg)
            except TrainingStopped as stop:
                if stop.reason != "collapse":  # NaN or a signal: summarise, then stop too
                    if accs:
                        results["methods"][method] = _summary(name, method, quick, accs,
                                                              picks, secs, collapsed, n_test,
                                                              finals)
                    raise _end_sweep(stop, method, seed, results, kept, out, plots) from stop
                # A collapsed run counts, at the accuracy it collapsed to: dropping it
                # would flatter the mean. results.json lists the seed.
                print(f"backflip: {method} seed {seed}: {stop}", file=sys.stderr)
                secs.append(sum(r["seconds"] for r in stop.history))
                accs.append(float(stop.history[-1]["target_acc"]))
                picks.append(pick(stop.history))  # its epochs, the collapsed one too
                finals.append(_final(stop.history[-1]))
                collapsed.append(seed)
                n_test = stop.history[-1].get("target_test_n")
                continue
            secs.append(sum(r["seconds"] for r in res.history))
            accs.append(res.target_accuracy)
            picks.append(res.selection)
            finals.append(_final(res.history[-1]))
            n_test = res.history[-1].get("target_test_n")  # absent in older run folders
            kept.setdefault(method, res)
        results["methods"][method] = _summary(name, method, quick, accs, picks, secs, collapsed,
                                              n_test, finals)
    _write(results, kept, out, plots)
    return results


def _final(row: dict[str, Any]) -> dict[str, Any]:
    # What the label-free pick across methods reads of a run's final epoch.
    return {k: row.get(k) for k in (*CRITERIA, "target_acc")}


def label_free_picks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per criterion, the method it picks for each seed among the runs, and their accuracy.

    Only the methods that need no target labels are candidates; each seed's pick reads
    the criteria of the runs' final epochs (:func:`backflip.dann._selection.pick_run`),
    never the target accuracy, which is reported beside it.

    >>> r = {"methods": {
    ...     "source-only": {"final": [{"dev_risk": 0.5, "target_acc": 0.7}]},
    ...     "dann": {"final": [{"dev_risk": 0.4, "target_acc": 0.8}]},
    ...     "target-only": {"final": [{"dev_risk": 0.1, "target_acc": 0.99}]}}}
    >>> label_free_picks(r)["dev_risk"]["picked"], label_free_picks(r)["dev_risk"]["target_accuracy"]["mean"]
    (['dann'], 0.8)
    """
    candidates = {m: r["final"] for m, r in results["methods"].items()
                  if "final" in r and not get_method(_trainer_method(m)).needs_target_labels}
    seeds = min((len(v) for v in candidates.values()), default=0)
    out: dict[str, dict[str, Any]] = {}
    for criterion in CRITERIA:
        picked, accs = [], []
        for s in range(seeds):
            name = pick_run({m: rows[s] for m, rows in candidates.items()}, criterion)
            if name is None or candidates[name][s]["target_acc"] is None:
                break
            picked.append(name)
            accs.append(float(candidates[name][s]["target_acc"]))
        else:
            if picked:
                out[criterion] = {"picked": picked, "target_accuracy": _stats(accs)}
    return out


def _trainer_method(run_name: str) -> str:
    # a --methods name (a method or a VARIANTS entry) -> the trainer's method
    return VARIANTS.get(run_name, (run_name, {}))[0]


def _end_sweep(stop: TrainingStopped, method: str, seed: int, results: dict[str, Any],
               kept: dict[str, TrainResult], out: Path, plots: bool) -> TrainingStopped:
    # Write the files for the runs that finished; return the error that ends the sweep.
    results["stopped"] = {"method": method, "seed": seed, "reason": stop.reason}
    _write(results, kept, out, plots)
    done = sum(len(r["target_accuracy"]["runs"]) for r in results["methods"].values())
    where = str(out / "results.json")
    summary = (f"The {done} run(s) that finished before it are summarised in {where!r}."
               if done else f"No run had finished before it; {where!r} says where it stopped.")
    again = (" The same `backflip run` command with --resume continues the whole sweep."
             if stop.reason == "signal" else "")
    from backflip.dann._train import TrainingStopped

    return TrainingStopped(f"{method} seed {seed}: {stop} {summary}{again}", stop.reason,
                           stop.checkpoint, stop.history)


def _summary(name: str, method: str, quick: bool, accs: list[float],
             picks: list[dict[str, Any]], secs: list[float], collapsed: list[int],
             n_test: int | None, finals: list[dict[str, Any]]) -> dict[str, Any]:
    # One method's entry of results.json: final-epoch accuracy, selections, time, config.
    config = experiment_config(name, method, quick=quick)
    return {
        "target_accuracy": _stats(accs),
        # how many target test images score it (the first eval_limit of the split)
        "target_test_samples": n_test,
        "collapsed_seeds": collapsed,
        "selected_target_accuracy": {
            c: _stats([p[c]["target_acc"] for p in picks if c in p])
            for c in (picks[0] if picks else {})},
        "seconds": _stats(secs),
        "final": finals,  # each seed's final-epoch criteria (and target accuracy)
        "config": dataclasses.asdict(config),
    }


def _write(results: dict[str, Any], kept: dict[str, TrainResult], out: Path,
           plots: bool) -> None:
    # The plots of the first finished run of each method (and its proxy A-distance, into
    # results), results.json, report.md.
    out.mkdir(parents=True, exist_ok=True)
    figures, pads = _plots(results["experiment"], kept, out) if plots and kept else ([], {})
    for method, pad in pads.items():
        results["methods"][method]["proxy_a_distance"] = pad
    results["label_free_pick"] = label_free_picks(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(report(results, figures))


def table(results: dict[str, Any]) -> str:
    """Markdown table of target accuracy (mean +- std over seeds) per method.

    >>> runs = {"target_accuracy": {"mean": 0.9, "std": 0.01, "runs": [0.89, 0.91]},
    ...         "seconds": {"mean": 1.5}}
    >>> print(table({"methods": {"dann": runs}}).splitlines()[2])
    | dann | 0.9000 +- 0.0100 | 2 | - | 1.5 |
    """
    lines = ["| method | target accuracy (final epoch), mean +- std | seeds | target test "
             "images | training seconds per run |", "|---|---|---|---|---|"]
    for method, r in results["methods"].items():
        a, s = r["target_accuracy"], r["seconds"]
        label = _LABELS.get(method, method)
        if r.get("collapsed_seeds"):
            label += f" ({len(r['collapsed_seeds'])} run(s) collapsed, counted)"
        lines.append(f"| {label} | {a['mean']:.4f} +- {a['std']:.4f} | {len(a['runs'])} | "
                     f"{r.get('target_test_samples') or '-'} | {s['mean']:.1f} |")
    return "\n".join([*lines, "", "std: the population standard deviation over the seeds "
                       "(ddof 0). Test images: how many target test images score the "
                       "accuracy (the first --eval-limit of the split)."]) + "\n"


def report(results: dict[str, Any], figures: list[str]) -> str:
    """report.md: the table, what each selection criterion would pick, the figures."""
    stopped = results.get("stopped")
    text = [f"# backflip run {results['experiment']}" + (" --quick" if results["quick"] else ""),
            "", *([f"**Stopped early** ({stopped['reason']}) at {stopped['method']} seed "
                   f"{stopped['seed']}: the tables hold only the runs that finished.", ""]
                  if stopped else []), table(results),
            "Model selection without target labels (target accuracy of the epoch each "
            "criterion picks; the headline above is the final epoch):", "",
            "| method | " + " | ".join(("source_val_acc", "dev_risk", "target_entropy", "snd"))
            + " |", "|---|---|---|---|---|"]
    for method, r in results["methods"].items():
        sel = r["selected_target_accuracy"]
        cells = [f"{sel[c]['mean']:.4f}" if c in sel else "-"
                 for c in ("source_val_acc", "dev_risk", "target_entropy", "snd")]
        text.append(f"| {method} | " + " | ".join(cells) + " |")
    picks = results.get("label_free_pick") or {}
    if picks:
        text += ["", "The pick across the methods without target labels (per seed, the run "
                 "whose final epoch each criterion prefers; target accuracy reported, never "
                 "used):", "", "| criterion | target accuracy, mean +- std | picked (per seed) |",
                 "|---|---|---|"]
        text += [f"| {c} | {p['target_accuracy']['mean']:.4f} +- "
                 f"{p['target_accuracy']['std']:.4f} | {', '.join(p['picked'])} |"
                 for c, p in picks.items()]
    pads = {m: r["proxy_a_distance"] for m, r in results["methods"].items()
            if "proxy_a_distance" in r}
    if pads:
        text += ["", "Proxy A-distance of the features of source and target test images (a "
                 "linear domain classifier, its regularisation chosen on a held-out quarter, "
                 "scored on another; 0: indistinguishable, 2: separable), in the plane of "
                 "the PCA plot: " + ", ".join(f"{m} {p['value']:.2f} (seed {p['seed']})"
                                             for m, p in pads.items())
                 + "; in all the features: " + ", ".join(
                     f"{m} {p['all_features']:.2f}" for m, p in pads.items()) + "."]
        if not any(get_method(_trainer_method(m)).role == "baseline" for m in pads):
            text.append("No source-only run among --methods, so no 'before adaptation' "
                        "panel: add source-only to compare.")
    text += [""] + [f"![{f}]({f})" for f in figures]
    return "\n".join(text) + "\n"


def _plots(name: str, kept: dict[str, TrainResult], out: Path
           ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    # Curves per method; PCA of source vs target features, before adaptation
    # (source-only) first; the moons decision boundary. Returns the files and each
    # method's proxy A-distance.
    import torch

    from backflip.dann._data import load_domain
    from backflip.dann._domain_norm import bn_domain
    from backflip.dann._evaluate import norm_domains
    from backflip.dann._plots import DecisionBoundary, FeatureProjection, TrainingCurves, _pyplot

    plt = _pyplot("the plots of backflip run")
    files = []
    for method, res in kept.items():
        fig = TrainingCurves(res.history, f"{name}: {method}, seed {res.config.seed}").plot()
        fig.savefig(out / f"curves-{method}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(f"curves-{method}.png")
    role = {m: get_method(_trainer_method(m)).role for m in kept}
    order = sorted(kept, key=lambda m: role[m] != "baseline")  # "before" first; stable
    some = kept[order[0]]
    src = load_domain(some.config, "source", "test")
    tgt = load_domain(some.config, "target", "test")
    n, pads = 1000, {}
    fig, axes = plt.subplots(1, len(kept), figsize=(4.2 * len(kept), 3.9), squeeze=False,
                             layout="constrained")
    with torch.no_grad():
        for ax, method in zip(axes[0], order, strict=True):
            res = kept[method]
            # each domain's images through its own batch statistics, as in training
            source_stats, target_stats = norm_domains(res.config.method)
            bn_domain(res.model, source_stats)
            fs = res.model.embed(torch.as_tensor(src.x[:n])).numpy()
            bn_domain(res.model, target_stats)  # the default a loaded model applies
            ft = res.model.embed(torch.as_tensor(tgt.x[:n])).numpy()
            stage = {"baseline": "before adaptation", "oracle": "upper bound"}.get(
                role[method], "after adaptation")
            proj = FeatureProjection(fs, ft, f"{stage}: {method}, seed {res.config.seed}")
            proj.plot(ax=ax)
            pads[method] = {"value": proj.pad_, "all_features": proj.pad_full_,
                            "seed": res.config.seed}
    fig.savefig(out / "features-pca.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append("features-pca.png")
    if src.x.ndim == 2 and src.x.shape[1] == 2:
        fig, axes = plt.subplots(1, len(kept), figsize=(4.2 * len(kept), 3.9), squeeze=False,
                             layout="constrained")
        for ax, method in zip(axes[0], order, strict=True):
            def predict(x, m=kept[method].model):
                with torch.no_grad():
                    return m(torch.as_tensor(x)).argmax(1).numpy()
            DecisionBoundary(predict, src.x, src.y, tgt.x,
                             f"{method}, seed {kept[method].config.seed}").plot(ax=ax)
        fig.savefig(out / "decision-boundary.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append("decision-boundary.png")
    return files, pads
