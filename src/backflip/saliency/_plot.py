"""PNG grids of saliency maps: input, map and overlay per sample (matplotlib, Agg)."""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from backflip._errors import BackflipValueError
from backflip._optional import require

__all__ = ["save_grid"]


def _np(a: object) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def _image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    if x.ndim == 2:
        img = x
    elif x.shape[0] == 1:
        img = x[0]
    else:
        img = np.moveaxis(x[:3], 0, -1)
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:  # not in [0, 1]: stretch for display
        img = (img - lo) / (hi - lo if hi > lo else 1.0)
    return img


def save_grid(
    path: str | os.PathLike,
    inputs: object,
    maps: object,
    *,
    titles: Sequence[str] | None = None,
    per_row: int = 4,
    title: str | None = None,
) -> pathlib.Path:
    """Write a PNG with, per sample, the input, the signed map and an overlay.

    ``inputs`` and ``maps``: arrays or tensors (N, C, H, W) or (N, H, W); the map is
    summed over channels and drawn red (positive) / blue (negative), scaled per sample
    to its 99th percentile of ``|map|``; the overlay draws ``|map|`` over the
    grey-scale input. ``titles``: one caption per sample. Returns the path.

    >>> import numpy as np, tempfile, pathlib
    >>> p = save_grid(pathlib.Path(tempfile.mkdtemp()) / "g.png",
    ...               np.random.rand(2, 1, 8, 8), np.random.randn(2, 1, 8, 8))
    >>> p.stat().st_size > 0
    True
    """
    Figure = require("matplotlib.figure", purpose="save_grid").Figure

    x, m = _np(inputs), _np(maps)
    if x.ndim == 3:
        x = x[:, None]
    if m.ndim == 3:
        m = m[:, None]
    if x.ndim != 4 or x.shape[0] != m.shape[0] or x.shape[2:] != m.shape[2:]:
        raise BackflipValueError(
            "save_grid needs inputs and maps of the same batch size and image size, "
            f"(N, C, H, W) or (N, H, W); got {tuple(x.shape)} and {tuple(m.shape)}."
        )
    n = x.shape[0]
    if titles is not None and len(titles) != n:
        raise BackflipValueError(f"save_grid got {len(titles)} titles for {n} samples.")
    per_row = max(1, min(per_row, n))
    rows = math.ceil(n / per_row)
    fig = Figure(figsize=(3 * 1.6 * per_row, 1.9 * rows + (0.5 if title else 0.1)))
    axes = fig.subplots(rows, 3 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, per_row)
        img = _image(x[i])
        sal = m[i].sum(axis=0)
        vmax = float(np.percentile(np.abs(sal), 99)) or 1e-12
        grey = img if img.ndim == 2 else img.mean(axis=-1)
        a_in, a_map, a_ov = axes[r, 3 * c : 3 * c + 3]
        a_in.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        a_map.imshow(sal, cmap="bwr", vmin=-vmax, vmax=vmax)
        a_ov.imshow(grey, cmap="gray", vmin=0, vmax=1)
        a_ov.imshow(np.clip(np.abs(sal) / vmax, 0, 1), cmap="hot", alpha=0.6, vmin=0, vmax=1)
        a_in.set_title(titles[i] if titles else f"#{i}", fontsize=8)
        a_map.set_title("map", fontsize=8)
        a_ov.set_title("overlay", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, "map: red raises the class score, blue lowers it "
             "(sum over channels); overlay: |map| on the grey input", ha="center",
             va="bottom", fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
