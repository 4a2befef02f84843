"""Rendering digit strings with Pillow from the DejaVu TrueType fonts matplotlib ships."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from backflip._errors import BackflipValueError
from backflip._optional import require

__all__ = ["FONT_NAMES", "font_paths", "render_masks"]

#: DejaVu faces used for rendering (all ship in matplotlib's mpl-data/fonts/ttf).
FONT_NAMES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
)


@functools.cache
def font_paths() -> tuple[Path, ...]:
    """Paths of the DejaVu fonts: matplotlib's copies, else /usr/share/fonts."""
    dirs = []
    try:
        import matplotlib

        dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:  # pragma: no cover - matplotlib is an apps dependency
        pass
    dirs.append(Path("/usr/share/fonts"))
    for directory in dirs:
        found = [p for name in FONT_NAMES for p in sorted(directory.rglob(name))[:1]]
        if found:
            return tuple(found)
    raise BackflipValueError(
        "no DejaVu TrueType font found (looked in matplotlib's mpl-data/fonts/ttf and "
        "/usr/share/fonts). Install matplotlib (pip install 'backflip[apps]')."
    )


@functools.cache
def _font(index: int, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_paths()[index]), size)


def render_masks(texts: list[str], centre: np.ndarray, font: np.ndarray, size: np.ndarray,
                 angle: np.ndarray, shift: np.ndarray, blur: np.ndarray, out: int) -> np.ndarray:
    """Render white-on-black uint8 masks ``(N, out, out)``.

    Character ``centre[i]`` of ``texts[i]`` is centred at the image centre plus
    ``shift[i]`` (pixels, (dx, dy)); the text is rotated by ``angle[i]`` degrees
    about that point and blurred with a Gaussian of radius ``blur[i]``.
    """
    require("PIL", purpose="rendering digits (the syndigits data set, write_fake_mnist)")
    from PIL import Image, ImageDraw, ImageFilter

    canvas = 2 * out
    c = canvas / 2
    lo = (canvas - out) // 2
    masks = np.empty((len(texts), out, out), np.uint8)
    for i, text in enumerate(texts):
        f = _font(int(font[i]), int(size[i]))
        k = int(centre[i])
        left, top, right, bottom = f.getbbox(text[k], anchor="ls")
        x0 = c + shift[i, 0] - f.getlength(text[:k]) - (left + right) / 2
        y0 = c + shift[i, 1] - (top + bottom) / 2
        img = Image.new("L", (canvas, canvas), 0)
        ImageDraw.Draw(img).text((x0, y0), text, fill=255, font=f, anchor="ls")
        if angle[i]:
            img = img.rotate(float(angle[i]), resample=Image.Resampling.BILINEAR,
                             center=(c + shift[i, 0], c + shift[i, 1]))
        img = img.crop((lo, lo, lo + out, lo + out))
        if blur[i] > 0:
            img = img.filter(ImageFilter.GaussianBlur(float(blur[i])))
        masks[i] = np.asarray(img)
    return masks
