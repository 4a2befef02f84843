"""``backflip saliency``: saliency maps of a trained DANN checkpoint, as a PNG grid.

Example: ``backflip saliency --checkpoint runs/dann/model.pt --dataset target --method guided
--n 16 --out saliency/`` writes ``saliency/saliency_guided_backprop_target.png`` (input, map,
overlay per image) and the maps as ``.npz``.
"""

from __future__ import annotations

import argparse
import pathlib

from backflip._errors import BackflipValueError

ALIASES = {"guided": "guided_backprop", "grad": "gradient", "ixg": "input_x_gradient"}
METHOD_CHOICES = (
    "guided", "guided_backprop", "gradient", "deconvnet", "input_x_gradient", "smoothgrad",
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "saliency",
        help="saliency maps (guided backprop, gradient, ...) of a `backflip train` checkpoint",
        description="Compute saliency maps of a checkpoint written by `backflip train` on "
        "source or target images and save a PNG grid (input, map, overlay).",
    )
    p.add_argument("--checkpoint", required=True, help="model checkpoint from `backflip train`")
    p.add_argument(
        "--dataset",
        default="target",
        help="'source' or 'target' (the run's own domains, read as it read them, with its "
        "transforms), a data set name from backflip.data.DATASETS, or a path (.npz, .npy, "
        ".csv or a folder of images in class sub-folders) (default: target)",
    )
    p.add_argument("--method", default="guided", choices=METHOD_CHOICES, help="(default: guided)")
    p.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    p.add_argument("--out", default="saliency", help="output folder (default: ./saliency)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="(default: test)")
    p.add_argument(
        "--target",
        default="pred",
        choices=("pred", "label"),
        help="explain the predicted class or the true label (default: pred)",
    )
    p.add_argument("--seed", type=int, default=0, help="which images are drawn (default: 0)")
    p.add_argument("--root", default=None, help="data cache folder (default: $BACKFLIP_DATA)")
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="for a run on your own network: the function that builds it, as for "
                   "`backflip train --model` (default: the one the run recorded)")
    p.set_defaults(func=run)


def _load_data(config, records: dict, name: str, split: str, root):
    import dataclasses

    from backflip.dann import load_domain
    from backflip.data import ArrayDataset, open_dataset

    config = dataclasses.replace(config, stream=False)  # saliency reads arrays
    for domain in ("source", "target"):
        if name in (domain, getattr(config, domain, None)):
            rec = records.get("target_test" if domain == "target" and split == "test"
                              and "target_test" in records else domain, {})
            if rec.get("form") in ("arrays", "dataset"):
                raise BackflipValueError(
                    f"the {domain} data of this run was passed to train() in Python "
                    f"({rec.get('name')!r}, {rec['form']}), so it cannot be read again from "
                    "the checkpoint; pass it as --dataset PATH (a .npz, .npy, .csv or image "
                    "folder of the same samples)."
                )
            if rec.get("path"):  # a file or folder: read it where training read it
                from backflip.dann._data import open_spec

                transform = getattr(config, f"{domain}_transform")
                return open_spec(config, rec["path"], split, transform, root), domain
            return load_domain(config, domain, split=split, root=root), domain
    ds = open_dataset(name, split=split, root=root, label_column=config.label_column,
                      image_size=config.image_size)
    if not isinstance(ds, ArrayDataset):  # pragma: no cover - open_dataset reads arrays
        ds = ds.to_arrays()
    return ds, name


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise BackflipValueError(f"--n must be >= 1; got {args.n}.")
    ckpt = pathlib.Path(args.checkpoint)
    if not ckpt.is_file():
        raise BackflipValueError(
            f"no checkpoint at {str(ckpt)!r}; train one with `backflip train` and pass the "
            "model file it writes."
        )
    import numpy as np
    import torch

    from backflip.saliency import METHODS, save_grid

    try:
        from backflip.dann import load_model
    except ImportError as err:  # pragma: no cover - backflip.dann ships with backflip
        raise BackflipValueError(f"backflip saliency needs backflip.dann: {err}") from None

    from backflip.dann import build_from_factory, load_checkpoint

    state = load_checkpoint(ckpt)
    user = None
    if args.model is not None:
        user = build_from_factory(args.model, tuple(state["in_shape"]), int(state["num_classes"]))
    model, config = load_model(ckpt, map_location="cpu", model=user)
    records = state.get("data", {})
    ds, label = _load_data(config, records, args.dataset, args.split, args.root)
    if ds.y is None and args.target == "label":
        raise BackflipValueError(
            f"{args.dataset!r} has no labels, which --target label explains; use --target "
            "pred (the predicted class), or pass a labelled data set."
        )
    y_all = ds.y if ds.y is not None else np.full(len(ds), -1)
    src_name = records.get("source", {}).get("name", config.source)
    tgt_name = records.get("target", {}).get("name", config.target)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds), size=min(args.n, len(ds)), replace=False))
    x, y = torch.from_numpy(np.ascontiguousarray(ds.x[idx])), torch.from_numpy(y_all[idx])
    method = ALIASES.get(args.method, args.method)
    try:
        with torch.no_grad():
            pred = model(x).argmax(dim=1)
    except RuntimeError as err:
        raise BackflipValueError(
            f"the model trained on {src_name} -> {tgt_name} cannot read "
            f"{args.dataset!r} images of shape {tuple(x.shape[1:])} ({err}). "
            "Use --dataset source or --dataset target."
        ) from None
    target = pred if args.target == "pred" else y
    maps = METHODS[method](model, x, target)
    if method in ("guided_backprop", "deconvnet"):  # show the override is in effect
        from backflip.torch import override_gradients

        rule = "guided" if method == "guided_backprop" else "deconvnet"
        with torch.no_grad(), override_gradients(model, rule) as report:
            model(x[:1])
        print(str(report).splitlines()[0])

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = [f"y={int(a)} pred={int(b)}" for a, b in zip(y, pred, strict=True)]
    method_name = getattr(config, "method", "?")
    label = pathlib.Path(label).stem if ("/" in label or "." in label) else label
    stem = f"saliency_{method}_{label}"
    np.savez(out / f"{stem}.npz", inputs=x.numpy(), maps=maps.numpy(), y=y.numpy(),
             pred=pred.numpy())  # fmt: skip
    scored = y >= 0
    acc = f", accuracy {float((pred[scored] == y[scored]).float().mean()):.2f}" if \
        scored.any() else ""
    if x.dim() != 4:  # vectors: one attribution per feature, no picture to draw
        print(f"{len(idx)} {label} samples{acc}; the samples are vectors of "
              f"{x.shape[1:].numel()} features, so the maps (one value per feature) are "
              f"written to {out / (stem + '.npz')} only (the PNG grid is for images)")
        return 0
    png = save_grid(
        out / f"{stem}.png",
        x,
        maps,
        titles=titles,
        title=f"{method} on {label} ({args.split}), model: {method_name} "
        f"{src_name} -> {tgt_name}, target class: {args.target}",
    )
    print(f"{len(idx)} {label} images{acc}; wrote {png} and {stem}.npz")
    return 0
