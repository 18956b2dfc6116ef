"""Image grids a person looks at: inputs beside reconstructions, prior samples."""

import numpy as np


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
