"""Procedural dSprites: the factor grid and the geometry of the renders."""

import numpy as np
import pytest

from vae_jax.data import DSpritesSource
from vae_jax.data import factor_classes_to_index
from vae_jax.data import factor_sizes
from vae_jax.data import factor_values
from vae_jax.data import index_to_factor_classes
from vae_jax.data import render
from vae_jax.data import render_values

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
