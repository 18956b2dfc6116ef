"""images.py and pictures.py: interpolation, traversal order, layouts, plots.

Fake decoders make the pictures checkable: `_columns_decoder` draws z[j] as pixel column j, so
a tile shows exactly which code produced it.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import images, pictures


def _columns_decoder(z, y=None, height=3):
    """z [n, zdim] -> [n, height, zdim, 1]: column j holds (z[j] + 3) / 6, i.e. [-3, 3] -> [0, 1]."""
    return jnp.broadcast_to(((z + 3) / 6)[:, None, :, None], (z.shape[0], height, z.shape[1], 1))


def _first_row_encoder(x, y=None):
    """Inverse of `_columns_decoder`: [n, h, zdim, 1] -> [n, zdim]."""
    return x[:, 0, :, 0] * 6 - 3


@pytest.mark.parametrize('method', ['linear', 'slerp'])
def test_interpolate_endpoints(method):
    z0, z1 = jax.random.normal(jax.random.key(0), (2, 16))
    path = pictures.interpolate(z0, z1, 7, method)  # jitted
    chex.assert_shape(path, (7, 16))
    np.testing.assert_allclose(path[0], z0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(path[-1], z1, rtol=1e-6, atol=1e-6)


def test_linear_interpolation_is_evenly_spaced():
    path = pictures.interpolate(jnp.array([0.0, 2.0]), jnp.array([4.0, -2.0]), 5)
    np.testing.assert_allclose(path, [[0, 2], [1, 1], [2, 0], [3, -1], [4, -2]], atol=1e-6)


def test_slerp_keeps_the_norm_of_equal_norm_endpoints():
    z0, z1 = jax.random.normal(jax.random.key(1), (2, 32))
    z0, z1 = 3 * z0 / jnp.linalg.norm(z0), 3 * z1 / jnp.linalg.norm(z1)
    path = pictures.interpolate(z0, z1, 11, 'slerp')
    np.testing.assert_allclose(jnp.linalg.norm(path, axis=-1), 3.0, rtol=1e-5)
    linear = pictures.interpolate(z0, z1, 11, 'linear')
    assert jnp.linalg.norm(linear[5]) < 2.9  # The straight path cuts inside the sphere.
    # Orthogonal unit vectors: the midpoint is at 45 degrees.
    mid = pictures.interpolate(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), 3, 'slerp')[1]
    np.testing.assert_allclose(mid, [0.5**0.5, 0.5**0.5], rtol=1e-6)
    # Equal angular steps.
    cos = jnp.sum(path[1:] * path[:-1], -1) / 9
    np.testing.assert_allclose(cos, cos[0], rtol=1e-5)


@pytest.mark.parametrize('z1', [
    jnp.array([1.0, 2.0, 3.0]),                  # identical
    jnp.array([1.0, 2.0, 3.0]) * (1 + 1e-7),     # parallel, float32 rounding apart
    jnp.array([2.0, 4.0, 6.0]),                  # parallel, different norms
    jnp.array([-1.0, -2.0, -3.0]),               # antiparallel: no unique great circle
    jnp.zeros(3),                                # no direction at all
])
def test_slerp_falls_back_to_linear_without_a_unique_circle(z1):
    z0 = jnp.array([1.0, 2.0, 3.0])
    slerp = pictures.interpolate(z0, z1, 6, 'slerp')
    assert jnp.all(jnp.isfinite(slerp))
    np.testing.assert_allclose(slerp, pictures.interpolate(z0, z1, 6, 'linear'), atol=1e-5)


def test_interpolate_rejects_unknown_method():
    with pytest.raises(ValueError, match='slerp'):
        pictures.interpolate(jnp.zeros(2), jnp.ones(2), 3, 'cubic')


def test_interpolation_rows_hold_inputs_and_reconstructions():
    x0 = _columns_decoder(jnp.array([[-3.0, 0.0, 3.0], [1.0, 1.0, 1.0]]))
    x1 = _columns_decoder(jnp.array([[3.0, 0.0, -3.0], [1.0, 1.0, -2.0]]))
    tiles = pictures.interpolation_tiles(_columns_decoder, _first_row_encoder, x0, x1, 5)
    chex.assert_shape(tiles, (2, 7, 3, 3, 1))
    np.testing.assert_allclose(tiles[:, 0], x0)   # inputs at both ends
    np.testing.assert_allclose(tiles[:, -1], x1)
    np.testing.assert_allclose(tiles[:, 1], x0, atol=1e-6)  # reconstructions of the ends
    np.testing.assert_allclose(tiles[:, -2], x1, atol=1e-6)
    np.testing.assert_allclose(tiles[0, 3, 0, :, 0], [0.5, 0.5, 0.5], atol=1e-6)  # midpoint


def test_interpolation_passes_each_pair_its_label():
    seen = []

    def decode(z, y):
        seen.append(np.asarray(y))
        return _columns_decoder(z)

    x = _columns_decoder(jnp.zeros((2, 3)))
    pictures.interpolation_tiles(decode, lambda x, y: _first_row_encoder(x), x, x, 4,
                                 y=np.array([7, 2]))
    np.testing.assert_array_equal(seen[0], [7] * 4 + [2] * 4)


def test_traversal_rows_are_ordered_by_kl():
    kl = np.array([0.1, 2.0, 0.5, 1.5])
    base = np.array([0.3, -0.6, 0.9, 1.2], np.float32)
    tiles, dims = pictures.traversal_tiles(_columns_decoder, base, kl, 5)
    np.testing.assert_array_equal(dims, [1, 3, 2, 0])
    chex.assert_shape(tiles, (4, 5, 3, 4, 1))
    values = tiles[:, :, 0, :, 0] * 6 - 3   # [row, step, dim]: the code behind each tile
    for row, d in enumerate(dims):
        np.testing.assert_allclose(values[row, :, d], np.linspace(-3, 3, 5), atol=1e-5)
        others = np.delete(values[row], d, axis=-1)
        np.testing.assert_allclose(others, np.broadcast_to(np.delete(base, d), others.shape),
                                   atol=1e-5)
    top, top_dims = pictures.traversal_tiles(_columns_decoder, base, kl, 5, top=2)
    np.testing.assert_array_equal(top_dims, [1, 3])
    np.testing.assert_allclose(top, tiles[:2])


def test_traversal_picture_shape_range_and_labels():
    kl = np.array([0.1, 2.0, 0.5])
    plain = pictures.traversal_picture(functools.partial(_columns_decoder, height=28),
                                       np.zeros(3), kl, 9, labels=False, scale=1)
    # 3 rows of 28-px tiles, 9 columns of 3-px tiles, 2-px borders.
    assert plain.shape == (3 * 30 + 2, 9 * 5 + 2, 1) and plain.dtype == np.float32
    pic = pictures.traversal_picture(functools.partial(_columns_decoder, height=28),
                                     np.zeros(3), kl, 9, top=2)
    assert pic.dtype == np.float32 and 0 <= pic.min() and pic.max() <= 1
    h, w = pic.shape[:2]
    assert h > 2 * 58 and w > 9 * 8 and pic.shape[2] == 1   # 28-px tiles upscaled 2x, + margins
    left = w - (9 * (2 * 3 + 2) + 2)
    assert left > 20 and pic[:, :left].min() < 0.2   # row labels drawn as dark text


def test_manifold_is_monotone_in_both_latents():
    decode = lambda z, y: np.broadcast_to(stats.norm.cdf(z)[:, None, :, None], (len(z), 2, 2, 1))
    tiles = pictures.manifold_tiles(decode, 6, low=0.1, high=0.9)
    chex.assert_shape(tiles, (6, 6, 2, 2, 1))
    left, right = tiles[:, :, 0, 0, 0], tiles[:, :, 0, 1, 0]  # Φ(z0), Φ(z1) per tile
    np.testing.assert_allclose(left[0], np.linspace(0.1, 0.9, 6), atol=1e-5)  # z0 rightwards
    np.testing.assert_allclose(right[:, 0], np.linspace(0.9, 0.1, 6), atol=1e-5)  # z1 upwards
    assert np.all(np.diff(left, axis=1) > 0) and np.all(np.diff(left, axis=0) == 0)
    assert np.all(np.diff(right, axis=0) < 0) and np.all(np.diff(right, axis=1) == 0)
    np.testing.assert_allclose(pictures.normal_quantiles(5),
                               stats.norm.ppf(np.linspace(0.05, 0.95, 5)), atol=1e-5)


def test_manifold_of_a_wider_latent_sweeps_the_chosen_dims():
    tiles = pictures.manifold_tiles(_columns_decoder, 4, latents=5, dims=(3, 1))
    codes = tiles[:, :, 0, :, 0] * 6 - 3   # [row, col, dim]
    np.testing.assert_allclose(codes[..., [0, 2, 4]], 0, atol=1e-5)
    assert np.all(np.diff(codes[..., 3], axis=1) > 0) and np.all(np.diff(codes[..., 1], axis=0) < 0)


def test_class_grid_rows_use_the_labels_and_columns_share_z():
    def decode(z, y):  # pixel column 0 = the label / 10, the rest = the code
        return jnp.concatenate([jnp.broadcast_to(y[:, None, None, None] / 10.0, (len(y), 3, 1, 1)),
                                _columns_decoder(z)], axis=2)

    tiles = pictures.class_tiles(jax.random.key(0), decode, [7, 2, 5], 4, latents=3)
    chex.assert_shape(tiles, (3, 4, 3, 4, 1))
    np.testing.assert_allclose(tiles[:, :, 0, 0, 0] * 10, [[7] * 4, [2] * 4, [5] * 4], atol=1e-5)
    codes = tiles[:, :, 0, 1:, 0]
    np.testing.assert_allclose(codes, np.broadcast_to(codes[0], codes.shape))  # same z per column
    assert np.all(np.abs(np.diff(codes[0], axis=0)).max(-1) > 1e-3)  # different z per column
    pic = pictures.class_picture(jax.random.key(0), decode, [7, 2, 5], 4, latents=3)
    assert pic.ndim == 3 and 0 <= pic.min() and pic.max() <= 1


def test_scatter_draws_every_class_in_its_colour():
    pytest.importorskip('matplotlib')
    labels = np.repeat(np.arange(4), 50)
    centres = np.array([[-2, -2], [2, -2], [-2, 2], [2, 2]], np.float32)
    means = centres[labels] + 0.3 * np.random.default_rng(0).normal(size=(200, 2))
    pic = pictures.latent_scatter(means, labels, size=(400, 300))
    assert pic.shape == (300, 400, 3) and pic.dtype == np.float32
    assert 0 <= pic.min() and pic.max() <= 1
    colours = pictures.scatter_colors(4)
    for c in range(4):
        close = np.abs(pic - colours[c]).max(-1) < 2 / 255
        assert close.sum() > 50, f'class {c} is not drawn in {colours[c]}'
    assert np.mean(np.all(pic > 0.99, -1)) > 0.5   # mostly white background


def test_tile_picture_layout_gaps_and_grid():
    tiles = np.zeros((2, 3, 4, 5, 1))
    pic = images.tile_picture(tiles, scale=2, pad=1, gaps=(1,))
    assert pic.shape == (2 * (8 + 1) + 1, 3 * (10 + 1) + 1 + 4, 1)
    assert pic[1:9, 1:11].max() == 0 and pic[1:9, 11:16].min() == 1  # tile, then the gap
    g = images.grid(np.zeros((6, 4, 5, 3)), rows=2)
    assert g.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert images.side_by_side(np.zeros((4, 2, 2, 1)), np.ones((4, 2, 2, 1))).shape == (7, 13, 1)
