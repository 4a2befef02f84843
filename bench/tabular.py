"""Vectors: the trainer's defaults against a scikit-learn logistic regression, source-only.

Real domain pairs as feature vectors (no image network): census income of men -> women
(``adult-sex``, 106 features), UCI Multiple Features digits <-> MNIST as 16 x 15 pixel
vectors (MNIST's central 20 x 20 crop resized, 240 features), with the full source and
with only 200 source samples (the small-data regime where an epoch used to be a few
steps), and UCI 8x8 digits <-> MNIST at 8x8 (64 features). For each pair:

* ``LogisticRegression`` (scikit-learn defaults, ``max_iter`` 3000) on the source
  standardised by ``StandardScaler`` fitted on the source;
* ``train(method="source-only")`` with the trainer's defaults;
* the same with the defaults before ``min_epoch_steps`` and ``mlp_hidden`` (one pass
  per epoch, 32 hidden units): what the small-data runs used to get;
* ``train(method="dann")`` with the defaults.

Target test accuracy, seed 0, one torch thread. ``--quick``: the first two pairs only.

    .venv/bin/python bench/tabular.py [--quick]

Prints a Markdown table and writes bench/out/tabular.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backflip import data
from backflip.dann import TrainConfig, train
from backflip.data import ArrayDataset

OLD_DEFAULTS = {"min_epoch_steps": 1, "hidden": 32}


def _mnist_vectors(split: str, n: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    # MNIST's central 20 x 20 (where its digits are) resized to (width, height), flattened
    ds = data.load("mnist", split, limit=n)
    x = np.stack([np.asarray(Image.fromarray((im[0, 4:24, 4:24] * 255).astype(np.uint8))
                             .resize(size, Image.BILINEAR), np.float32) / 255 for im in ds.x])
    return x.reshape(len(x), -1), ds.y


def _flat(ds: ArrayDataset) -> tuple[np.ndarray, np.ndarray]:
    return ds.x.reshape(len(ds.x), -1), ds.y


def pairs(quick: bool):
    """(name, source, target, target test): (x, y) arrays."""
    yield ("adult-male -> adult-female", _flat(data.load("adult-male")),
           _flat(data.load("adult-female")), _flat(data.load("adult-female", "test")))
    mf, mft = _flat(data.load("mfeat")), _flat(data.load("mfeat", "test"))
    mx, mtx = _mnist_vectors("train", 2000, (15, 16)), _mnist_vectors("test", 1000, (15, 16))
    yield "mfeat -> MNIST (16x15 vectors)", mf, mx, mtx
    if quick:
        return
    yield "mfeat -> MNIST, 200 source samples", (mf[0][:200], mf[1][:200]), mx, mtx
    yield "MNIST -> mfeat, 200 source samples", (mx[0][:200], mx[1][:200]), mf, mft
    ud, udt = _flat(data.load("uci-digits")), _flat(data.load("uci-digits", "test"))
    m8, m8t = _mnist_vectors("train", 2000, (8, 8)), _mnist_vectors("test", 1000, (8, 8))
    yield "UCI 8x8 digits -> MNIST 8x8", ud, m8, m8t
    yield "MNIST 8x8 -> UCI 8x8 digits", m8, ud, udt


def logistic(source, test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scale = StandardScaler().fit(source[0])
    model = LogisticRegression(max_iter=3000).fit(scale.transform(source[0]), source[1])
    return float(model.score(scale.transform(test[0]), test[1]))


def ours(source, target, test, **settings) -> float:
    k = int(max(source[1].max(), test[1].max())) + 1

    def ds(a):
        return ArrayDataset(a[0].astype(np.float32), a[1].astype(np.int64), k)

    cfg = TrainConfig(progress=False, plots=False, threads=1, **settings)
    return train(cfg, source=ds(source), target=ds(target), target_test=ds(test)).target_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows, t0 = [], time.perf_counter()
    for name, s, t, tt in pairs(args.quick):
        row = {"pair": name, "source_n": len(s[0]), "features": s[0].shape[1],
               "logistic": logistic(s, tt),
               "source_only": ours(s, t, tt, method="source-only"),
               "source_only_old_defaults": ours(s, t, tt, method="source-only", **OLD_DEFAULTS),
               "dann": ours(s, t, tt, method="dann")}
        rows.append(row)
        print(row, flush=True)
    lines = ["| pair | source samples | features | LogisticRegression | source-only "
             "(defaults) | source-only (old defaults) | dann (defaults) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['source_n']} | {r['features']} | {r['logistic']:.3f} | "
              f"{r['source_only']:.3f} | {r['source_only_old_defaults']:.3f} | "
              f"{r['dann']:.3f} |" for r in rows]
    mean = {k: float(np.mean([r[k] for r in rows]))
            for k in ("logistic", "source_only", "source_only_old_defaults", "dann")}
    lines.append(f"| mean | | | {mean['logistic']:.3f} | {mean['source_only']:.3f} | "
                 f"{mean['source_only_old_defaults']:.3f} | {mean['dann']:.3f} |")
    print("\n".join(lines))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "tabular.json").write_text(json.dumps(
        {"rows": rows, "mean": mean, "seconds": time.perf_counter() - t0}, indent=2) + "\n")


if __name__ == "__main__":
    main()
