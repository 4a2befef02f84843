"""SynDigits-style images (the paper's "Syn Numbers" idea) and fake MNIST files for tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backflip.data._idx import write_idx
from backflip.data._render import font_paths, render_masks

__all__ = ["SYNDIGITS_SIZES", "synthesize_digits", "write_fake_mnist"]

#: Samples per split (the original SynDigits has ~500k; these keep generation < 10 s).
SYNDIGITS_SIZES = {"train": 25_000, "test": 9_000}
_SPLIT_CODE = {"train": 0, "test": 1}


def synthesize_digits(n: int, seed: int, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """``x`` uint8 (N, 3, 32, 32) and ``y`` of SynDigits-style numbers.

    Every random choice for all ``n`` samples is drawn first, so the first
    ``limit`` samples are the same whatever ``limit`` is. Labels are balanced:
    the label is drawn uniformly, then the number around it. A 1-3 digit number
    is rendered; its labelled digit is character ``len // 2`` (the middle digit of
    3, the right-hand digit of 2, the only digit of 1) and is the one centred in
    the image.
    """
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], 0x5D])
    label = rng.integers(0, 10, n)
    length = rng.integers(1, 4, n)
    first = rng.integers(1, 10, n)          # leading digit of 2- and 3-digit numbers
    last = rng.integers(0, 10, n)           # trailing digit of 3-digit numbers
    font = rng.integers(0, len(font_paths()), n)
    size = rng.integers(18, 30, n)
    angle = rng.uniform(-15, 15, n)
    shift = rng.uniform(-2.5, 2.5, (n, 2))
    blur = rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.7)
    fg = rng.random((n, 3))
    bg = rng.random((n, 3))
    noise_seed = rng.integers(0, 2**63 - 1)
    m = n if limit is None else min(limit, n)
    texts = []
    for i in range(m):
        d = str(label[i])
        texts.append({1: d, 2: f"{first[i]}{d}", 3: f"{first[i]}{d}{last[i]}"}[int(length[i])])
    centre = length[:m] // 2
    # Ensure contrast: where the two luminances are within 0.3, push the digit away.
    lum = np.array([0.299, 0.587, 0.114])
    fg, bg = fg[:m], bg[:m]
    low = np.abs(fg @ lum - bg @ lum) < 0.3
    dark_bg = (bg @ lum) < 0.5
    fg[low & dark_bg] = 0.7 + 0.3 * fg[low & dark_bg]
    fg[low & ~dark_bg] = 0.3 * fg[low & ~dark_bg]
    fg, bg = fg.astype(np.float32)[:, :, None, None], bg.astype(np.float32)[:, :, None, None]
    noise = np.random.default_rng(noise_seed)
    x = np.empty((m, 3, 32, 32), np.uint8)
    for lo in range(0, m, 2048):  # colour in chunks to bound memory
        hi = min(lo + 2048, m)
        alpha = render_masks(texts[lo:hi], centre[lo:hi], font[lo:hi], size[lo:hi],
                             angle[lo:hi], shift[lo:hi], blur[lo:hi], 32)[:, None] / np.float32(255)
        img = bg[lo:hi] * (1 - alpha) + fg[lo:hi] * alpha
        img += noise.normal(0, 0.03, img.shape).astype(np.float32)
        x[lo:hi] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return {"x": x, "y": label[:m].astype(np.int64)}


def write_fake_mnist(directory: str | os.PathLike[str], n_train: int = 600, n_test: int = 200,
                     seed: int = 0) -> Path:
    """Write four small, valid MNIST IDX files of rendered digits, for offline tests.

    Images are 28x28 white-on-black single digits (DejaVu fonts, random size,
    shift, rotation, blur, noise), labels balanced: a small model learns them.
    Install them with ``fetch("mnist", root=..., source=directory, verify=False)``.

    >>> import tempfile
    >>> d = write_fake_mnist(tempfile.mkdtemp(), n_train=20, n_test=10)
    >>> sorted(p.name for p in d.iterdir())[:2]
    ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, code in (("train", n_train, 0), ("t10k", n_test, 1)):
        rng = np.random.default_rng([seed, code, 0xFA4E])
        y = rng.permutation(np.arange(n) % 10)
        masks = render_masks(
            [str(v) for v in y], np.zeros(n, np.int64), rng.integers(0, len(font_paths()), n),
            rng.integers(18, 24, n), rng.uniform(-12, 12, n), rng.uniform(-2, 2, (n, 2)),
            rng.uniform(0.0, 0.8, n), 28,
        ).astype(np.float32)
        masks += rng.normal(0, 12, masks.shape)
        write_idx(directory / f"{split}-images-idx3-ubyte",
                  np.clip(np.rint(masks), 0, 255).astype(np.uint8))
        write_idx(directory / f"{split}-labels-idx1-ubyte", y.astype(np.uint8))
    return directory
