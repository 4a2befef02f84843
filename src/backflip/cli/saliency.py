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
        help="'source' or 'target' (the model's own domains, with its transforms), "
        "or a data set name from backflip.data.DATASETS (default: target)",
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
    p.set_defaults(func=run)


def _load_data(config, name: str, split: str, root):
    from backflip.dann import load_domain

    for domain in ("source", "target"):
        if name in (domain, getattr(config, domain, None)):
            return load_domain(config, domain, split=split, root=root), domain
    from backflip.data import load

    return load(name, split, root=root), name


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

    model, config = load_model(ckpt, map_location="cpu")
    ds, label = _load_data(config, args.dataset, args.split, args.root)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds), size=min(args.n, len(ds)), replace=False))
    x, y = torch.from_numpy(np.ascontiguousarray(ds.x[idx])), torch.from_numpy(ds.y[idx])
    method = ALIASES.get(args.method, args.method)
    try:
        with torch.no_grad():
            pred = model(x).argmax(dim=1)
    except RuntimeError as err:
        raise BackflipValueError(
            f"the model trained on {config.source} -> {config.target} cannot read "
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
    stem = f"saliency_{method}_{label}"
    titles = [f"y={int(a)} pred={int(b)}" for a, b in zip(y, pred, strict=True)]
    method_name = getattr(config, "method", "?")
    png = save_grid(
        out / f"{stem}.png",
        x,
        maps,
        titles=titles,
        title=f"{method} on {label} ({args.split}), model: {method_name} "
        f"{config.source} -> {config.target}, target class: {args.target}",
    )
    np.savez(out / f"{stem}.npz", inputs=x.numpy(), maps=maps.numpy(), y=y.numpy(),
             pred=pred.numpy())  # fmt: skip
    acc = float((pred == y).float().mean())
    print(f"{len(idx)} {label} images, accuracy {acc:.2f}; wrote {png} and {stem}.npz")
    return 0
