"""Procedural dSprites: the factor grid of Matthey et al. (2017), rendered in numpy.

The real dataset cannot be downloaded on the build machines, so the same grid is rendered
(`dsprites_tfds.DSpritesTfdsSource` reads the real one from a prepared TFDS data_dir):
shape {square, ellipse, heart} x scale linspace(0.5, 1, 6) x orientation linspace(0, 2pi, 40)
x posX linspace(0, 1, 32) x posY linspace(0, 1, 32) = 737280 binary 64x64 images. Index and
factor classes correspond in row-major order (shape slowest, posY fastest), like the real
``latents_classes``. Pixels are rendered by testing each pixel centre against the sprite's
implicit function, so images are exactly {0, 1} and bit-for-bit deterministic.

Geometry (pixels; x right, y down as displayed):
- at scale 1 the square is 19 px wide (~0.3 of the frame), ellipse 19 x 9.5 px, heart 19 px;
- posX moves the sprite centre right and posY moves it down, over [14, 50] px, so even the
  rotated square's corner (9.5 * sqrt(2) = 13.4 px from the centre) stays inside the frame;
- orientation rotates counter-clockwise about the sprite centre. As in the real dataset,
  orientation 0 and 2pi are the same image, and the square (ellipse) repeats every pi/2 (pi).
"""

import numpy as np

from vae_jax.data import ground_truth

SHAPES = ('square', 'ellipse', 'heart')
FACTOR_NAMES = ('shape', 'scale', 'orientation', 'pos_x', 'pos_y')
IMAGE_SIZE = 64
_SIZES = (3, 6, 40, 32, 32)
_SCALES = np.linspace(0.5, 1.0, 6)
_ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
_POSITIONS = np.linspace(0.0, 1.0, 32)
NUM_EXAMPLES = int(np.prod(_SIZES))  # 737280

_HALF_SIZE = 9.5  # px: half the square's side at scale 1.
_MARGIN = 14.0  # px: >= the farthest sprite point from its centre (13.4 px, square corner).
_WINDOW = 30  # px: a square around the centre that holds any sprite; only it is rendered.

# Heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.139, 1.139], y in [-1, 1.2365];
# these map its bounding box onto [-1, 1]^2 so it is as wide as the square.
_HEART_X = 1.139
_HEART_Y_HALF = 1.11825
_HEART_Y_MID = 0.11825


def factor_sizes():
    """Number of values per factor, in ``FACTOR_NAMES`` order: ``(3, 6, 40, 32, 32)``."""
    return _SIZES


def index_to_factor_classes(indices):
    """int ``[n]`` dataset indices -> int ``[n, 5]`` factor classes (row-major, posY fastest)."""
    return np.stack(np.unravel_index(np.asarray(indices, np.int64), _SIZES), axis=-1)


def factor_classes_to_index(classes):
    """int ``[n, 5]`` factor classes -> int ``[n]`` dataset indices (inverse of the above)."""
    classes = np.asarray(classes, np.int64)
    return np.ravel_multi_index(tuple(classes.T), _SIZES)


def factor_values(classes):
    """int ``[n, 5]`` factor classes -> float ``[n, 5]`` values.

    Columns: shape (the class id 0, 1, 2; the real dataset stores 1, 2, 3), scale in
    [0.5, 1], orientation in [0, 2pi] radians, posX and posY in [0, 1].
    """
    classes = np.asarray(classes, np.int64)
    return np.stack([
        classes[:, 0].astype(np.float64),
        _SCALES[classes[:, 1]],
        _ORIENTATIONS[classes[:, 2]],
        _POSITIONS[classes[:, 3]],
        _POSITIONS[classes[:, 4]],
    ], axis=-1)


def _inside_square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _inside_ellipse(u, v):
    return u * u + 4.0 * v * v <= 1.0  # Semi-axes 1 and 1/2, long axis along x at angle 0.


def _inside_heart(u, v):
    x = u * _HEART_X
    y = v * _HEART_Y_HALF + _HEART_Y_MID
    r = x * x + y * y - 1.0
    return r * r * r <= x * x * y * y * y


_INSIDE = (_inside_square, _inside_ellipse, _inside_heart)


def render_values(values):
    """Renders sprites from continuous factor values.

    Args:
        values: float ``[n, 5]`` as returned by `factor_values` (shape must be 0, 1 or 2;
            scale in (0, 1], positions in [0, 1]; any orientation in radians).

    Returns:
        float32 ``[n, 64, 64, 1]`` with values exactly 0 or 1.
    """
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    shape = values[:, 0].astype(np.int64)
    # 2pi -> 0 exactly, so the duplicate orientation renders identically (sin(2pi) != 0 in floats).
    theta = np.mod(values[:, 2], 2 * np.pi)
    span = IMAGE_SIZE - 2 * _MARGIN
    cx = _MARGIN + values[:, 3] * span
    cy = _MARGIN + values[:, 4] * span

    # Only a _WINDOW-sized patch around each centre can be inside: 4.5x fewer pixels to test.
    offsets = np.arange(_WINDOW)
    x0 = np.clip(np.floor(cx).astype(np.int64) - _WINDOW // 2, 0, IMAGE_SIZE - _WINDOW)
    y0 = np.clip(np.floor(cy).astype(np.int64) - _WINDOW // 2, 0, IMAGE_SIZE - _WINDOW)
    cols = x0[:, None] + offsets  # [n, W]
    rows = y0[:, None] + offsets  # [n, W]
    # Pixel centres relative to the sprite centre, y flipped to point up, in units of the size.
    unit = (_HALF_SIZE * values[:, 1])[:, None]
    dx = ((cols + 0.5 - cx[:, None]) / unit).astype(np.float32)[:, None, :]  # [n, 1, W]
    dy = ((cy[:, None] - rows - 0.5) / unit).astype(np.float32)[:, :, None]  # [n, W, 1]
    cos = np.cos(theta).astype(np.float32)[:, None, None]
    sin = np.sin(theta).astype(np.float32)[:, None, None]
    # Rotating the sampling grid by -theta turns the sprite by +theta.
    u = cos * dx + sin * dy  # [n, W, W]
    v = cos * dy - sin * dx

    inside = np.zeros((n, _WINDOW, _WINDOW), bool)
    for k, inside_fn in enumerate(_INSIDE):
        sel = shape == k
        if sel.any():
            inside[sel] = inside_fn(u[sel], v[sel])
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :], 0] = inside
    return images


def render(classes):
    """int ``[n, 5]`` factor classes -> float32 ``[n, 64, 64, 1]`` binary images."""
    return render_values(factor_values(classes))


class DSpritesSource:
    """All 737280 procedural dSprites as a `Source` and a `GroundTruthData`.

    The label is the shape class (0, 1, 2). Images are rendered on demand (no cache: rendering
    is a few ms per batch of 256).
    """

    num_examples = NUM_EXAMPLES
    example_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
    num_classes = len(SHAPES)
    factor_names = FACTOR_NAMES
    factor_sizes = _SIZES
    unique_observations = True  # one image per factor combination

    def __repr__(self):
        return 'DSpritesSource()'

    def get_factors(self, indices):
        """int ``[n]`` indices -> int ``[n, 5]`` factor classes (see `factor_values`)."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= NUM_EXAMPLES):
            raise IndexError(f'indices outside [0, {NUM_EXAMPLES}) for dSprites')
        return index_to_factor_classes(indices)

    def get_batch(self, indices):
        """int ``[n]`` -> ``{'image': float32 [n, 64, 64, 1] in {0, 1}, 'label': int32 [n]}``."""
        classes = self.get_factors(indices)
        return {'image': render(classes), 'label': classes[:, 0].astype(np.int32)}

    def sample_factors(self, num, rng):
        """int64 ``[num, 5]`` factor classes, each factor uniform over its values."""
        return ground_truth.sample_uniform_factors(_SIZES, num, rng)

    def sample_observations_from_factors(self, factors, rng):
        """int ``[n, 5]`` factor classes -> `render` of them, float32 ``[n, 64, 64, 1]`` in {0, 1}.

        ``rng`` is unused: each factor combination has exactly one image.
        """
        del rng
        return render(ground_truth.check_factors(factors, _SIZES))
