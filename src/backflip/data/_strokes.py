"""Drawing pen trajectories (polylines) as antialiased, MNIST-like grey images, in NumPy."""

from __future__ import annotations

import numpy as np

__all__ = ["render_strokes"]


def render_strokes(points: np.ndarray, size: int = 28, box: int = 20, width: float = 2.0,
                   chunk: int = 512) -> np.ndarray:
    """uint8 ``(N, size, size)`` images of the polylines ``points`` ``(N, K, 2)``, white on black.

    Points are (x, y) with x to the right and y down (image order). Each trajectory
    is scaled by one factor (its aspect ratio kept) and centred so that its ink,
    strokes ``width`` pixels wide, fills a ``box`` x ``box`` square in the middle of the
    image, as MNIST's digits fill 20x20 of 28x28. A pixel's value is
    ``clip(width / 2 + 0.5 - d, 0, 1) * 255`` for ``d`` the distance from its centre to
    the polyline: full ink within ``width / 2 - 0.5`` of the line, a one-pixel ramp
    outside (antialiasing), nothing beyond ``width / 2 + 0.5``; so the skeleton is fit
    into ``box - width - 1`` pixels. Deterministic; no drawing library.

    >>> img = render_strokes(np.array([[[0, 0], [10, 0]]]), size=8, box=6)
    >>> img[0, 2:6].tolist()  # a 2-px line centred in 8x8; its ink spans the 6-px box
    [[0, 0, 0, 0, 0, 0, 0, 0], [0, 97, 255, 255, 255, 255, 97, 0], [0, 97, 255, 255, 255, 255, 97, 0], [0, 0, 0, 0, 0, 0, 0, 0]]
    """
    pts = np.asarray(points, np.float64)
    lo, hi = pts.min(axis=1), pts.max(axis=1)                      # (N, 2)
    span = (hi - lo).max(axis=1)                                   # (N,)
    reach = width / 2 + 0.5                                        # ink's distance from the line
    scale = np.where(span > 0, (box - 2 * reach) / np.where(span > 0, span, 1.0), 0.0)
    pts = (pts - (lo + hi)[:, None, :] / 2) * scale[:, None, None] + size / 2
    centres = np.arange(size, dtype=np.float32) + np.float32(0.5)
    gx, gy = (g.ravel()[None] for g in np.meshgrid(centres, centres))  # (1, P): x, y
    pts = pts.astype(np.float32)
    out = np.empty((len(pts), size, size), np.uint8)
    for start in range(0, len(pts), chunk):
        p = pts[start:start + chunk]
        d2 = np.full((len(p), size * size), np.inf, np.float32)
        for k in range(p.shape[1] - 1):                            # one segment at a time
            ax, ay = p[:, k, :1], p[:, k, 1:]                      # (n, 1)
            bx, by = p[:, k + 1, :1] - ax, p[:, k + 1, 1:] - ay
            px, py = gx - ax, gy - ay                              # (n, P)
            length2 = bx * bx + by * by
            t = np.clip((px * bx + py * by) / np.where(length2 > 0, length2, 1), 0, 1)
            np.minimum(d2, (px - t * bx) ** 2 + (py - t * by) ** 2, out=d2)
        ink = np.clip(np.float32(reach) - np.sqrt(d2), 0, 1)
        out[start:start + chunk] = np.rint(ink * 255).reshape(-1, size, size).astype(np.uint8)
    return out
