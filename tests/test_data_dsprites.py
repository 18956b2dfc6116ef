"""Procedural dSprites: the factor grid and the geometry of the renders."""

import numpy as np
import pytest
from scipy import stats

from vae_jax import configs
from vae_jax.data import DSpritesSource
from vae_jax.data import factor_classes_to_index
from vae_jax.data import factor_sizes
from vae_jax.data import factor_values
from vae_jax.data import index_to_factor_classes
from vae_jax.data import render
from vae_jax.data import render_values
from vae_jax.data import Toy2DSource
from vae_jax.data.ground_truth import as_ground_truth
from vae_jax.data.ground_truth import GroundTruthData
from vae_jax.data.ground_truth import sample
from vae_jax.data.registry import make_sources
from vae_jax.data.registry import Subset

SQUARE, ELLIPSE, HEART = 0, 1, 2


def _one(shape, scale=5, orientation=0, x=16, y=16):
    return render(np.array([[shape, scale, orientation, x, y]]))[0, ..., 0]


def _centroid(image):
    """(x, y) of the pixel centres inside, x right, y down."""
    rows, cols = np.nonzero(image)
    return cols.mean() + 0.5, rows.mean() + 0.5


def test_grid_size_and_row_major_order():
    assert factor_sizes() == (3, 6, 40, 32, 32)
    src = DSpritesSource()
    assert (src.num_examples, src.example_shape, src.num_classes) == (737280, (64, 64, 1), 3)
    np.testing.assert_array_equal(
        index_to_factor_classes([0, 1, 32, 1024, 40960, 245760, 737279]),
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0],
         [1, 0, 0, 0, 0], [2, 5, 39, 31, 31]])


def test_index_factor_round_trip():
    idx = np.random.default_rng(0).integers(0, 737280, 5000)
    classes = index_to_factor_classes(idx)
    assert classes.shape == (5000, 5)
    assert (classes >= 0).all() and (classes < np.array(factor_sizes())).all()
    np.testing.assert_array_equal(factor_classes_to_index(classes), idx)


def test_factor_values():
    values = factor_values([[2, 0, 0, 0, 31], [1, 5, 39, 31, 0]])
    np.testing.assert_allclose(values, [[2, 0.5, 0, 0, 1], [1, 1, 2 * np.pi, 1, 0]])


def test_source_batch_is_binary_labelled_and_deterministic():
    src = DSpritesSource()
    idx = np.random.default_rng(1).integers(0, 737280, 64)
    batch = src.get_batch(idx)
    assert batch['image'].shape == (64, 64, 64, 1) and batch['image'].dtype == np.float32
    assert set(np.unique(batch['image'])) == {0.0, 1.0}
    assert (batch['image'].sum(axis=(1, 2, 3)) > 20).all()
    assert batch['label'].dtype == np.int32
    np.testing.assert_array_equal(batch['label'], src.get_factors(idx)[:, 0])
    np.testing.assert_array_equal(src.get_batch(idx)['image'], batch['image'])
    np.testing.assert_array_equal(render(src.get_factors(idx[:3])), batch['image'][:3])


def test_position_moves_the_centroid_right_and_down():
    for k in range(0, 32, 5):
        # Centre = 14 + 36 * pos px; the square is symmetric, so its centroid is the centre.
        x, y = _centroid(_one(SQUARE, x=k, y=31 - k))
        assert abs(x - (14 + 36 * k / 31)) < 0.6
        assert abs(y - (14 + 36 * (31 - k) / 31)) < 0.6


def test_area_grows_with_scale():
    for shape in (SQUARE, ELLIPSE, HEART):
        areas = [_one(shape, scale=s).sum() for s in range(6)]
        assert np.all(np.diff(areas) > 0), areas
        assert 0.2 < areas[0] / areas[-1] < 0.3  # ~ (0.5 / 1)^2
    # At scale 1 the square is 19 px wide: about 0.3 of the frame.
    assert abs(_one(SQUARE).sum() - 19 ** 2) < 20


@pytest.mark.parametrize('shape', [SQUARE, ELLIPSE, HEART])
def test_sprites_never_leave_the_frame(shape):
    corners = [(x, y) for x in (0, 31) for y in (0, 31)]
    classes = np.array([[shape, 5, o, x, y] for o in range(40) for x, y in corners])
    images = render(classes)[..., 0]
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert border.sum() == 0
    # Same sprite, same area wherever it is, up to aliasing (a 19 px side covers 19 or 20 px).
    areas = images.sum(axis=(1, 2))
    centred = render(np.array([[shape, 5, o, 16, 16] for o in range(40)]))[..., 0].sum(axis=(1, 2))
    np.testing.assert_allclose(areas, np.repeat(centred, 4), rtol=0.15)


def test_orientation_zero_and_two_pi_render_identically():
    for shape in (SQUARE, ELLIPSE, HEART):
        np.testing.assert_array_equal(_one(shape, orientation=0), _one(shape, orientation=39))


def test_rotation_is_counter_clockwise_about_the_centre():
    for k in (0, 3, 8, 13, 22, 30):
        theta = 2 * np.pi * k / 39
        image = _one(ELLIPSE, orientation=k)
        rows, cols = np.nonzero(image)
        xy = np.stack([cols, -rows], axis=1).astype(float)  # y up.
        xy -= xy.mean(axis=0)
        _, vecs = np.linalg.eigh(xy.T @ xy)
        long_axis = np.arctan2(vecs[1, -1], vecs[0, -1])
        diff = (long_axis - theta + np.pi / 2) % np.pi - np.pi / 2  # The axis is mod pi.
        assert abs(diff) < np.deg2rad(6), (k, np.rad2deg(diff))
        np.testing.assert_allclose(_centroid(image), _centroid(_one(ELLIPSE)), atol=0.5)


def test_rotated_square_keeps_its_area():
    base = _one(SQUARE)
    turned = _one(SQUARE, orientation=5)  # ~46 degrees.
    assert (base != turned).sum() > 50
    assert abs(turned.sum() - base.sum()) < 0.05 * base.sum()


def test_heart_is_not_symmetric_under_half_turn_but_ellipse_and_square_are():
    centred = [[shape, 1.0, 0.0, 0.5, 0.5] for shape in (SQUARE, ELLIPSE, HEART)]
    square, ellipse, heart = render_values(np.array(centred))[..., 0]
    np.testing.assert_array_equal(np.rot90(square, 2), square)
    np.testing.assert_array_equal(np.rot90(ellipse, 2), ellipse)
    assert (np.rot90(heart, 2) != heart).sum() > 0.2 * heart.sum()
    # Upright heart: lobes (widest rows) above the point.
    rows, _ = np.nonzero(heart)
    widths = heart.sum(axis=1)
    assert np.argmax(widths) < rows.mean()
    # The three shapes differ from each other.
    assert (square != ellipse).sum() > 50 and (ellipse != heart).sum() > 50


# ---- ground truth ---------------------------------------------------------------------------


def test_procedural_source_is_ground_truth():
    src = DSpritesSource()
    assert isinstance(src, GroundTruthData)
    assert src.factor_names == ('shape', 'scale', 'orientation', 'pos_x', 'pos_y')
    assert src.factor_sizes == (3, 6, 40, 32, 32)


def test_sample_factors_is_uniform_and_independent():
    factors = DSpritesSource().sample_factors(60_000, np.random.default_rng(0))
    assert factors.shape == (60_000, 5) and np.issubdtype(factors.dtype, np.integer)
    for f, size in enumerate((3, 6, 40, 32, 32)):
        counts = np.bincount(factors[:, f], minlength=size)
        assert len(counts) == size  # Nothing at or above the size, ...
        assert factors[:, f].min() == 0 and counts.min() > 0  # ... nothing negative, all hit.
        assert stats.chisquare(counts).pvalue > 1e-4, (f, counts)
    # Independence: the 3 x 6 shape-scale table is uniform too.
    joint = np.bincount(factors[:, 0] * 6 + factors[:, 1], minlength=18)
    assert stats.chisquare(joint).pvalue > 1e-4, joint
    # The check has power: 10% too many of one scale value fails it.
    skewed = np.random.default_rng(0).choice(6, 60_000, p=np.array([1.1, 1, 1, 1, 1, 1]) / 6.1)
    assert stats.chisquare(np.bincount(skewed, minlength=6)).pvalue < 1e-4


def test_observations_are_the_renders_and_sampling_is_deterministic():
    src = DSpritesSource()
    factors, images = sample(src, 50, np.random.default_rng(3))
    assert images.shape == (50, 64, 64, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images, render(factors))
    np.testing.assert_array_equal(
        src.sample_observations_from_factors(factors, np.random.default_rng(9)), images)
    # The same as get_batch of those factors' indices: one pixel convention.
    np.testing.assert_array_equal(src.get_batch(factor_classes_to_index(factors))['image'], images)
    again, images_again = sample(src, 50, np.random.default_rng(3))
    np.testing.assert_array_equal(again, factors)
    np.testing.assert_array_equal(images_again, images)
    other, _ = sample(src, 50, np.random.default_rng(4))
    assert (other != factors).any()


def test_observations_of_bad_factors_are_refused():
    src = DSpritesSource()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='outside'):
        src.sample_observations_from_factors(np.array([[0, 6, 0, 0, 0]]), rng)
    with pytest.raises(ValueError, match='outside'):
        src.sample_observations_from_factors(np.array([[0, 0, -1, 0, 0]]), rng)
    with pytest.raises(ValueError, match='shape'):
        src.sample_observations_from_factors(np.zeros((2, 4), int), rng)
    with pytest.raises(ValueError, match='integers'):
        src.sample_observations_from_factors(np.zeros((2, 5)), rng)
    assert src.sample_observations_from_factors(np.zeros((0, 5), int), rng).shape == (0, 64, 64, 1)


def test_eval_combinations_are_held_out_of_training_and_fixed():
    config = configs.base_config()
    config.data.name = 'dsprites'
    train, eval_source = make_sources(config.data, seed=0)
    assert isinstance(eval_source, Subset) and eval_source.num_examples == 10_000
    assert train.num_examples == 737_280 - 10_000
    # No eval combination is trained on, and together they are the whole grid.
    assert not np.isin(eval_source.indices, train.indices).any()
    assert len(np.union1d(eval_source.indices, train.indices)) == 737_280
    # In random order: the first 1000 (a quick run's eval) cover the shapes evenly, where a
    # sorted prefix would be all squares.
    shapes = eval_source.get_batch(np.arange(1000))['label']
    assert all(abs(np.mean(shapes == k) - 1 / 3) < 0.05 for k in range(3))
    # The same held-out set for every seed (and so for every run that is compared).
    _, other_seed = make_sources(config.data, seed=7)
    np.testing.assert_array_equal(other_seed.indices, eval_source.indices)
    # The metrics sample the whole factor grid: the ground truth behind both is the parent.
    assert as_ground_truth(eval_source) is train.source
    assert as_ground_truth(train) is train.source
    toy = Toy2DSource(num_examples=100)
    assert as_ground_truth(toy) is None
    assert as_ground_truth(Subset(toy, np.arange(10))) is None
