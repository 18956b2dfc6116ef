"""Active units, per-dimension KL and posterior summaries against constructed posteriors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.distributions import gaussian_kl
from vae_jax.evaluate.latents import (active_units, collect_posteriors, kl_per_dim, map_source,
                                      posterior_stats)


def dead_dim_posteriors(n=1000, z=10, live=4, seed=0):
    """Means that vary with x only in dims 0..live-1 (variance ~1); the rest are constant."""
    rng = np.random.default_rng(seed)
    mean = np.full((n, z), 0.3, np.float32)
    mean[:, :live] = rng.standard_normal((n, live))
    logvar = np.zeros((n, z), np.float32)
    logvar[:, :live] = -3.0  # Live units are confident; dead ones stay at the prior's scale.
    return mean, logvar


def test_active_units_counts_only_dims_that_vary():
    mean, _ = dead_dim_posteriors()
    count, variances = jax.jit(active_units)(jnp.asarray(mean))
    assert int(count) == 4
    assert variances.shape == (10,)
    np.testing.assert_allclose(variances, np.var(mean, axis=0), rtol=1e-5, atol=1e-7)
    # Tiny jitter in a dead dimension stays below the 1e-2 threshold.
    jitter = mean + np.float32(0.05) * np.random.default_rng(1).standard_normal(mean.shape)
    jitter[:, :4] = mean[:, :4]
    assert int(active_units(jnp.asarray(jitter))[0]) == 4


def test_active_units_threshold_is_strict():
    # +-0.5 alternating: variance exactly 0.25 in float32.
    mean = jnp.tile(jnp.array([[0.5], [-0.5]], jnp.float32), (50, 3))
    mean = mean.at[:, 1].multiply(2.0)  # Variance 1.
    mean = mean.at[:, 2].set(0.0)  # Variance 0.
    count, variances = active_units(mean, threshold=0.25)
    np.testing.assert_array_equal(variances, [0.25, 1.0, 0.0])
    assert int(count) == 1  # 0.25 is not > 0.25.
    assert int(active_units(mean, threshold=0.2499)[0]) == 2
    assert int(active_units(mean)[0]) == 2  # Default 0.01.


def test_kl_per_dim_matches_closed_form():
    # Dim i: means +-a_i (so mean^2 = a_i^2), variance s_i^2 everywhere:
    # KL_i = 0.5 * (a_i^2 + s_i^2 - 1 - log s_i^2).
    a = np.array([0.0, 0.5, 1.0, 2.0])
    s2 = np.array([1.0, 0.5, 0.1, 2.0])
    signs = np.where(np.arange(100) % 2, 1.0, -1.0)[:, None]
    mean = jnp.asarray(signs * a, jnp.float32)
    logvar = jnp.asarray(np.broadcast_to(np.log(s2), (100, 4)), jnp.float32)
    kl = jax.jit(kl_per_dim)(mean, logvar)
    expected = 0.5 * (a**2 + s2 - 1.0 - np.log(s2))
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
    assert float(kl[0]) == pytest.approx(0.0, abs=1e-7)  # Posterior = prior.
    # Its sum is the batch-mean KL term of the ELBO.
    np.testing.assert_allclose(jnp.sum(kl), jnp.mean(jax.vmap(gaussian_kl)(mean, logvar)),
                               rtol=1e-5)


def test_posterior_stats_is_json_ready_and_consistent():
    mean, logvar = dead_dim_posteriors()
    stats = posterior_stats(mean, logvar)
    assert json.loads(json.dumps(stats)) == stats  # Plain Python types only.
    assert stats['num_examples'] == 1000 and stats['latents'] == 10
    assert stats['active_units'] == 4 and stats['active_threshold'] == 0.01
    np.testing.assert_allclose(stats['mean_of_means'], mean.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats['std_of_means'], mean.std(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats['mean_posterior_var'][:4], np.exp(-3.0), rtol=1e-6)
    np.testing.assert_allclose(stats['mean_posterior_var'][4:], 1.0)
    np.testing.assert_allclose(
        stats['aggregate_var'],
        np.array(stats['var_of_means']) + np.array(stats['mean_posterior_var']), rtol=1e-6)
    # Dead dims: mean 0.3, var 1 -> KL = 0.3^2 / 2 each.
    np.testing.assert_allclose(stats['kl_per_dim'][4:], 0.045, rtol=1e-5)
    assert stats['kl_total'] == pytest.approx(sum(stats['kl_per_dim']), rel=1e-6)


class CountingSource:
    """Example i is the vector [i, 2i] with label i % 3."""

    example_shape = (2,)
    num_classes = 3

    def __init__(self, num_examples):
        self.num_examples = num_examples

    def get_batch(self, indices):
        i = np.asarray(indices)
        return {'image': np.stack([i, 2 * i], -1).astype(np.float32),
                'label': (i % 3).astype(np.int32)}


def test_collect_posteriors_keeps_order_drops_padding_and_compiles_once():
    traces = []

    @jax.jit
    def encode(x, y):
        traces.append(x.shape)
        return x + y[:, None], -x

    out = collect_posteriors(encode, CountingSource(23), batch_size=8)
    i = np.arange(23)
    np.testing.assert_array_equal(out['label'], i % 3)
    np.testing.assert_array_equal(out['mean'], np.stack([i, 2 * i], -1) + (i % 3)[:, None])
    np.testing.assert_array_equal(out['logvar'], -np.stack([i, 2 * i], -1))
    assert out['mean'].dtype == np.float32
    assert traces == [(8, 2)]  # The padded last batch has the same shape: no retrace.

    short = collect_posteriors(encode, CountingSource(23), batch_size=8, max_examples=5)
    assert short['mean'].shape == (5, 2)


def test_map_source_returns_any_pytree():
    (a, b), labels = map_source(lambda x, y: (x[:, 0], {'y': y}), CountingSource(7),
                                batch_size=4)
    np.testing.assert_array_equal(a, np.arange(7))
    np.testing.assert_array_equal(b['y'], labels)
