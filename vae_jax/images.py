"""Image grids a person looks at: inputs beside reconstructions, prior samples, labelled tables.

Every picture is [H, W, C] float in [0, 1], ready for `MetricWriter.image` or a PNG.
"""

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def grid(images: np.ndarray, rows: int, pad: int = 1) -> np.ndarray:
    """Tiles images row-major into one picture.

    Args:
      images: [n, h, w, c] in [0, 1], n divisible by `rows`.
      rows: number of rows.
      pad: pixels of white border between tiles.

    Returns:
      [rows*(h+pad)+pad, cols*(w+pad)+pad, c].
    """
    n, h, w, c = images.shape
    cols = n // rows
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(rows * cols):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        out[top:top + h, left:left + w] = images[i]
    return out


def side_by_side(inputs: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Two rows: inputs [n, h, w, c] above their reconstructions [n, h, w, c]."""
    return grid(np.concatenate([inputs, reconstructions]), rows=2)


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: [..., h, w, c] -> [..., factor·h, factor·w, c]."""
    return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def auto_scale(h: int, w: int) -> int:
    """Integer factor that brings a tile to about 64 px: 2 for MNIST's 28, 1 for dSprites' 64."""
    return max(1, 64 // max(h, w))


def tile_picture(tiles: np.ndarray, *, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, corner: str | None = None,
                 scale: int | None = None, pad: int = 2, gaps: Sequence[int] = ()) -> np.ndarray:
    """Lays out a table of tiles as one picture, optionally with text labels in the margins.

    Args:
      tiles: [r, k, h, w, c], clipped to [0, 1].
      row_labels: r strings, written left of the rows (empty strings are allowed).
      col_labels: k strings, written above the columns.
      corner: text for the top-left corner, where both margins meet (e.g. 'rows \\ cols').
      scale: integer upscaling of each tile; None: `auto_scale`. The borders are not scaled.
      pad: pixels of white border between tiles.
      gaps: column indices before which an extra `4·pad` gap separates groups of columns.

    Returns:
      [H, W, c] float32 in [0, 1].
    """
    scale = auto_scale(*tiles.shape[2:4]) if scale is None else scale
    tiles = upscale(np.clip(np.asarray(tiles, np.float32), 0, 1), scale)
    r, k, h, w, c = tiles.shape
    gap = 4 * pad
    lefts = [pad + j * (w + pad) + gap * sum(g <= j for g in gaps) for j in range(k)]
    tops = [pad + i * (h + pad) for i in range(r)]
    out = np.ones((tops[-1] + h + pad, lefts[-1] + w + pad, c), np.float32)
    for i, top in enumerate(tops):
        for j, left in enumerate(lefts):
            out[top:top + h, left:left + w] = tiles[i, j]
    rows = None if row_labels is None else list(zip([t + h / 2 for t in tops], row_labels))
    cols = None if col_labels is None else list(zip([l + w / 2 for l in lefts], col_labels))
    return annotate(out, rows, cols, corner)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=11)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font.
        return ImageFont.load_default()


def annotate(picture: np.ndarray, rows: Sequence[tuple[float, str]] | None = None,
             cols: Sequence[tuple[float, str]] | None = None,
             corner: str | None = None) -> np.ndarray:
    """Adds white margins holding text: rows left of the picture, cols above it.

    Args:
      picture: [h, w, c] in [0, 1], c = 1 or 3.
      rows: (y, text) pairs, text vertically centred on pixel row y of `picture`.
      cols: (x, text) pairs, text horizontally centred on pixel column x of `picture`.
      corner: text for the top-left corner; shown only when there are rows and cols.

    Returns:
      [h + top, w + left, c] float32 in [0, 1]; `picture` unchanged when there is no text.
    """
    rows, cols = [(y, t) for y, t in rows or () if t], [(x, t) for x, t in cols or () if t]
    if not rows and not cols:
        return picture
    font, margin = _font(), 4
    corner = corner if rows and cols else None

    def size(text: str) -> tuple[int, int]:
        x0, y0, x1, y1 = font.getbbox(text)
        return x1 - x0, y1 - y0

    left_texts = [t for _, t in rows] + [corner or '']
    left = max(size(t)[0] for t in left_texts) + 2 * margin if rows else 0
    top = max(size(t)[1] for _, t in cols) + 2 * margin if cols else 0
    h, w, c = picture.shape
    pixels = np.asarray(np.clip(picture, 0, 1) * 255 + 0.5, np.uint8)
    canvas = Image.new('L' if c == 1 else 'RGB', (w + left, h + top), 'white')
    canvas.paste(Image.fromarray(pixels[..., 0] if c == 1 else pixels), (left, top))
    draw = ImageDraw.Draw(canvas)

    def put(text: str, x: float, y: float, centred: bool) -> None:
        # Placed from the bounding box, not with anchors: the bitmap fallback font has none.
        x0, y0, x1, y1 = font.getbbox(text)
        x = x - (x0 + x1) / 2 if centred else x - x0
        draw.text((x, y - (y0 + y1) / 2), text, fill='black', font=font)

    if corner:
        put(corner, margin, top / 2, centred=False)
    for y, text in rows:
        put(text, margin, top + y, centred=False)
    for x, text in cols:
        put(text, left + x, top / 2, centred=True)
    return np.asarray(canvas, np.float32).reshape(h + top, w + left, c) / 255
