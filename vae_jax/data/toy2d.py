"""Deterministic 2-D toy datasets for checking that a VAE fits a multimodal density."""

import numpy as np

from vae_jax.errors import UserError

KINDS = ('pinwheel', 'gaussian_mixture')


def pinwheel(rng, num_examples, num_classes=5, radial_std=0.3, tangential_std=0.05, rate=0.25):
    """Points on ``num_classes`` curved arms, as in the SVAE code of Johnson et al. (2016).

    Each arm is a Gaussian blob at radius ~1, rotated by an angle that grows exponentially with
    the radius. The SVAE code multiplies the points by 10; this does not, so the data has about
    the scale of a N(0, I) prior.

    Returns:
        ``(points float32 [num_examples, 2], labels int32 [num_examples])``, label = arm.
    """
    labels = np.arange(num_examples) % num_classes  # Balanced arms.
    features = rng.standard_normal((num_examples, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angles = 2 * np.pi * labels / num_classes + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    # Row vector times [[cos, -sin], [sin, cos]], exactly as the SVAE code's einsum.
    points = np.stack([features[:, 0] * cos + features[:, 1] * sin,
                       -features[:, 0] * sin + features[:, 1] * cos], axis=-1)
    return points.astype(np.float32), labels.astype(np.int32)


def gaussian_mixture(rng, num_examples, num_classes=5, radius=2.0, std=0.25):
    """Isotropic Gaussians of std ``std`` with means evenly spaced on a circle of ``radius``.

    Returns:
        ``(points float32 [num_examples, 2], labels int32 [num_examples])``, label = component.
    """
    labels = np.arange(num_examples) % num_classes
    angles = 2 * np.pi * labels / num_classes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    points = means + std * rng.standard_normal((num_examples, 2))
    return points.astype(np.float32), labels.astype(np.int32)


class Toy2DSource:
    """A fixed set of 2-D points as a `Source`; ``'image'`` holds the points ``[n, 2]``.

    The points are drawn once from ``np.random.default_rng(seed)`` and shuffled together with
    their labels, so the same arguments always give the same dataset; use a different seed for
    a held-out set.
    """

    example_shape = (2,)

    def __init__(self, kind='pinwheel', num_examples=10000, seed=0, num_classes=5):
        if kind not in KINDS:
            raise UserError(f'Unknown toy2d kind {kind!r}; known: {", ".join(KINDS)}.')
        if num_examples < 1 or num_classes < 1:
            raise UserError(f'toy2d needs num_examples >= 1 and num_classes >= 1, got '
                            f'{num_examples} and {num_classes}.')
        self.kind = kind
        self.num_examples = int(num_examples)
        self.num_classes = int(num_classes)
        rng = np.random.default_rng(seed)
        make = pinwheel if kind == 'pinwheel' else gaussian_mixture
        points, labels = make(rng, self.num_examples, self.num_classes)
        order = rng.permutation(self.num_examples)
        self.points, self.labels = points[order], labels[order]

    def __repr__(self):
        return f'Toy2DSource({self.kind!r}, num_examples={self.num_examples})'

    def get_batch(self, indices):
        """int ``[n]`` -> ``{'image': float32 [n, 2], 'label': int32 [n]}``."""
        indices = np.asarray(indices, np.int64)
        return {'image': self.points[indices], 'label': self.labels[indices]}
