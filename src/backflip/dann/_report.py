"""report.md of one run: its table, what each criterion picks, its curves and feature plots.

The same kind of report ``backflip run`` writes for a preset, for any run with an
``out`` folder: ``curves-METHOD.png`` (accuracies, losses, λ), ``features-pca.png``
(source vs target features, each domain through its own batch statistics, with the
proxy A-distance) and, for 2-d inputs, ``decision-boundary.png``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from backflip.dann._domain_norm import bn_domain
from backflip.dann._evaluate import EvalSets

__all__ = ["run_table", "write_report"]


def run_table(result: Any) -> str:
    """The markdown table of one run (the headline is the final epoch, never selected)."""
    last = result.history[-1]
    acc = result.target_accuracy
    seconds = sum(r["seconds"] for r in result.history)
    lines = ["| method | target accuracy (final epoch) | target test samples | source val "
             "accuracy | epochs | training seconds |", "|---|---|---|---|---|---|",
             f"| {result.config.method} | "
             + ("not scored (no labelled target test set)" if acc is None else f"{acc:.4f}")
             + f" | {last.get('target_test_n') or '-'} | "
             + (f"{last['source_val_acc']:.4f}" if last.get("source_val_acc") is not None
                else "-")
             + f" | {len(result.history)} | {seconds:.1f} |"]
    return "\n".join(lines) + "\n"


def _selection_table(result: Any) -> str:
    lines = ["| criterion | picks epoch | target accuracy then |", "|---|---|---|"]
    for name, sel in result.selection.items():
        acc = sel.get("target_acc")
        lines.append(f"| {name} | {sel['epoch']} | {'-' if acc is None else f'{acc:.4f}'} |")
    return "\n".join(lines) + "\n"


def write_report(result: Any, ev: EvalSets) -> list[str]:
    """Write report.md and the plots into ``result.out``; returns the figure files."""
    from backflip._optional import require

    require("matplotlib", purpose="the run's plots (report.md; pass plots=False / "
            "--no-plots to skip them)")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from backflip.dann._plots import DecisionBoundary, FeatureProjection, TrainingCurves

    out, cfg, model = result.out, result.config, result.model
    method, files = cfg.method, []
    title = f"{result.data['source']['name']} -> {result.data['target']['name']}: {method}"
    fig = TrainingCurves(result.history, f"{title}, seed {cfg.seed}").plot()
    fig.savefig(out / f"curves-{method}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append(f"curves-{method}.png")
    model.eval()
    with torch.no_grad():
        n = 1000
        bn_domain(model, ev.domains[0])
        fs = model.embed(ev.source_x[:n]).float().cpu().numpy() if hasattr(model, "embed") else \
            model.features(ev.source_x[:n]).flatten(1).float().cpu().numpy()
        bn_domain(model, ev.domains[1])  # the default a loaded model applies
        ft = model.embed(ev.target_x[:n]).float().cpu().numpy() if hasattr(model, "embed") else \
            model.features(ev.target_x[:n]).flatten(1).float().cpu().numpy()
    proj = FeatureProjection(fs, ft, f"{title}, seed {cfg.seed}")
    fig, ax = plt.subplots(figsize=(4.6, 3.9), layout="constrained")
    proj.plot(ax=ax)
    fig.savefig(out / "features-pca.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append("features-pca.png")
    sx = ev.source_x.cpu().numpy()
    if sx.ndim == 2 and sx.shape[1] == 2 and ev.source_y is not None:
        def predict(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.as_tensor(x, device=ev.source_x.device)).argmax(1).cpu().numpy()

        fig, ax = plt.subplots(figsize=(4.6, 3.9), layout="constrained")
        DecisionBoundary(predict, sx, ev.source_y, ev.target_x.cpu().numpy(),
                         f"{title}, seed {cfg.seed}").plot(ax=ax)
        fig.savefig(out / "decision-boundary.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append("decision-boundary.png")
    data_lines = [f"- {role}: {rec['name']} ({rec['form']}"
                  + (f", {rec['path']}" if rec.get("path") else "")
                  + f"), {rec['n']} samples of shape {tuple(rec['shape'])}, sha256 "
                  f"{str(rec.get('sha256'))[:16]}..." for role, rec in result.data.items()]
    text = [f"# backflip train: {title}", "", run_table(result),
            "Model selection without target labels (the epoch each criterion picks):", "",
            _selection_table(result), "Data:", "", *data_lines, "",
            f"Proxy A-distance of the final features (source vs target, a linear domain "
            f"classifier, its regularisation chosen on a held-out quarter, scored on another; "
            f"0: indistinguishable, 2: separable): {proj.pad_:.2f} in the plane of the PCA "
            f"plot, {proj.pad_full_:.2f} in all {proj.dim_} features.", ""]
    if result.notes:
        text += ["Notes:", "", *[f"- {note}" for note in result.notes], ""]
    text += [f"![{f}]({f})" for f in files]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return files
