"""2-D toy datasets: deterministic, balanced, and shaped like their description."""

import numpy as np
import pytest

from vae_jax.data import Source
from vae_jax.data import Toy2DSource
from vae_jax.errors import UserError


@pytest.mark.parametrize('kind', ['pinwheel', 'gaussian_mixture'])
def test_deterministic_shapes_and_balanced_labels(kind):
    src = Toy2DSource(kind, num_examples=1000, seed=3)
    assert isinstance(src, Source)
    assert (src.num_examples, src.example_shape, src.num_classes) == (1000, (2,), 5)
    batch = src.get_batch(np.arange(1000))
    assert batch['image'].shape == (1000, 2) and batch['image'].dtype == np.float32
    assert batch['label'].dtype == np.int32
    np.testing.assert_array_equal(np.bincount(batch['label']), [200] * 5)
    same = Toy2DSource(kind, num_examples=1000, seed=3).get_batch(np.arange(1000))
    np.testing.assert_array_equal(same['image'], batch['image'])
    other = Toy2DSource(kind, num_examples=1000, seed=4).get_batch(np.arange(1000))
    assert not np.allclose(other['image'], batch['image'])
    assert np.abs(batch['image']).max() < 5  # About the scale of a N(0, I) prior.


def test_gaussian_mixture_components_sit_on_a_circle():
    src = Toy2DSource('gaussian_mixture', num_examples=5000, seed=0, num_classes=4)
    for k in range(4):
        pts = src.points[src.labels == k]
        np.testing.assert_allclose(pts.mean(0), 2 * np.array([np.cos(k * np.pi / 2),
                                                              np.sin(k * np.pi / 2)]), atol=0.03)
        np.testing.assert_allclose(pts.std(0), 0.25, rtol=0.1)


def test_pinwheel_arms_are_rotated_copies():
    src = Toy2DSource('pinwheel', num_examples=5000, seed=0)
    radii = np.linalg.norm(src.points, axis=1)
    assert 0.9 < np.median(radii) < 1.1
    angles = [np.angle(np.exp(1j * np.arctan2(*src.points[src.labels == k][:, ::-1].T)).mean())
              for k in range(5)]
    steps = np.angle(np.exp(1j * np.diff(angles)))
    # Like the SVAE code, arm k sits at angle -2 pi k / 5 (its rotation matrix acts on rows).
    np.testing.assert_allclose(steps, -2 * np.pi / 5, atol=0.05)


def test_unknown_kind():
    with pytest.raises(UserError, match='pinwheel, gaussian_mixture'):
        Toy2DSource('moons')
