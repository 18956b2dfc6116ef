"""The β-VAE family's losses: closed forms, numpy references, and device-count invariance."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from vae_jax import base_config, keys as keys_lib, model_fns, objectives
from vae_jax.objectives import beta_tcvae, capacity, dip_vae, factor_vae

GLOBAL_BATCH = 16


def test_capacity_rises_linearly_then_holds():
    c = [float(capacity.capacity_at(s, 25.0, 100)) for s in (0, 50, 100, 1000)]
    assert c == [0.0, 12.5, 25.0, 25.0]


def _numpy_tc(z, mean, logvar, normalizer):
    """log q(z_i) - sum_d log q(z_id) with explicit loops over the batch."""
    out = []
    for zi in z:
        log_q = -0.5 * (np.log(2 * np.pi) + logvar + (zi - mean) ** 2 / np.exp(logvar))  # [M, d]
        joint = logsumexp(log_q.sum(-1)) - np.log(normalizer)
        marginals = sum(logsumexp(log_q[:, d]) - np.log(normalizer) for d in range(z.shape[1]))
        out.append(joint - marginals)
    return np.array(out)


@pytest.mark.parametrize('dataset_size', [0, 1000])
def test_total_correlation_matches_numpy(dataset_size):
    rng = np.random.default_rng(0)
    z, mean = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    logvar = rng.normal(size=(7, 3)) * 0.3
    got = beta_tcvae.total_correlation(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar), dataset_size)
    want = _numpy_tc(z, mean, logvar, 7 * dataset_size if dataset_size else 7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_total_correlation_is_zero_when_all_posteriors_are_equal():
    z = jax.random.normal(jax.random.key(0), (6, 4))
    mean, logvar = jnp.full((9, 4), 0.3), jnp.full((9, 4), -0.5)
    np.testing.assert_allclose(beta_tcvae.total_correlation(z, mean, logvar), 0.0, atol=1e-5)


def test_total_correlation_converges_to_the_closed_form():
    """Posterior means ~ N(0, S), q(z|x) = N(mean, s² I): q(z) = N(0, S + s² I), whose TC is
    -0.5 log det(C) / prod diag(C) in closed form."""
    s2, m = 0.04, 4000
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    k1, k2 = jax.random.split(jax.random.key(1))
    mean = jax.random.multivariate_normal(k1, jnp.zeros(2), jnp.asarray(cov), (m,))
    logvar = jnp.full((m, 2), math.log(s2))
    z = mean + math.sqrt(s2) * jax.random.normal(k2, (m, 2))
    c = cov + s2 * np.eye(2)
    closed_form = -0.5 * np.log(np.linalg.det(c) / np.prod(np.diag(c)))
    estimate = float(jnp.mean(beta_tcvae.total_correlation(z, mean, logvar)))
    assert abs(estimate - closed_form) < 0.03, (estimate, closed_form)


@pytest.mark.parametrize('dip_type', ['i', 'ii'])
def test_dip_covariance_and_regularizer(dip_type):
    rng = np.random.default_rng(2)
    mean, logvar = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    cov = np.cov(mean, rowvar=False, bias=True)
    if dip_type == 'ii':
        cov = cov + np.diag(np.exp(logvar).mean(0))
    got = dip_vae.dip_covariance(jnp.asarray(mean), jnp.asarray(logvar), dip_type)
    np.testing.assert_allclose(got, cov, rtol=1e-5, atol=1e-6)
    off = cov - np.diag(np.diag(cov))
    want = 2.0 * np.sum(off ** 2) + 3.0 * np.sum((np.diag(cov) - 1) ** 2)
    np.testing.assert_allclose(dip_vae.dip_regularizer(got, 2.0, 3.0), want, rtol=1e-5)
    assert float(dip_vae.dip_regularizer(jnp.eye(3), 2.0, 3.0)) == 0.0


def test_permute_dims_shuffles_each_dimension_independently():
    z = jnp.arange(200.0).reshape(100, 2) * jnp.array([1.0, -1.0])
    p = np.asarray(factor_vae.permute_dims(jax.random.key(0), z))
    for d in range(2):
        np.testing.assert_array_equal(np.sort(p[:, d]), np.sort(np.asarray(z[:, d])))
    pairs = {(int(a), int(-b)) for a, b in p}
    assert len([1 for a, b in pairs if b == a + 1]) < 10  # rows are no longer kept together


def test_discriminator_loss_and_density_ratio():
    zeros = jnp.zeros((4, 2))
    np.testing.assert_allclose(factor_vae.discriminator_loss(zeros, zeros), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(factor_vae.density_ratio_tc(jnp.array([[2.0, 0.5]])), [1.5])


def test_trained_discriminator_estimates_the_total_correlation():
    """Kim & Mnih's density-ratio trick on z ~ N(0, [[1, ρ], [ρ, 1]]): the trained
    discriminator's mean log D/(1-D) approaches TC = -0.5 log(1 - ρ²) = 0.83 for ρ = 0.9."""
    config = base_config()
    config.objective.name = 'factor_vae'
    config.model.latents = 2
    config.discriminator.hidden = (64, 64)
    config.discriminator.learning_rate = 3e-3
    disc = factor_vae.init(jax.random.key(0), config)
    cov = jnp.array([[1.0, 0.9], [0.9, 1.0]])

    @jax.jit
    def step(disc, key):
        k1, k2 = jax.random.split(key)
        z = jax.random.multivariate_normal(k1, jnp.zeros(2), cov, (512,))
        grads, metrics = factor_vae.grads(disc, z, k2, None)
        return disc.apply_gradients(grads=grads), metrics

    for i in range(600):
        disc, metrics = step(disc, jax.random.key(i))
    z = jax.random.multivariate_normal(jax.random.key(10**6), jnp.zeros(2), cov, (20000,))
    tc = float(jnp.mean(factor_vae.density_ratio_tc(disc.apply_fn({'params': disc.params}, z))))
    assert abs(tc - (-0.5 * math.log(1 - 0.81))) < 0.15, tc
    assert float(metrics['disc_accuracy']) > 0.6


def test_capacity_loss_is_recon_plus_gamma_abs_kl_minus_c():
    x = jax.random.bernoulli(jax.random.key(0), 0.3, (8, 6)).astype(jnp.float32)
    c = base_config()
    c.model.hidden = (16,)
    c.model.latents = 3
    fns = model_fns.build(c.model, (6,), 0)
    params = fns.module.init(jax.random.key(1), x)['params']
    keys = keys_lib.example_keys(jax.random.key(2), jnp.arange(8))
    t = objectives.elbo_terms(params, x, None, keys, fns)
    loss, metrics = capacity.capacity_loss(params, x, None, keys, fns=fns, step=jnp.asarray(30),
                                           gamma=100.0, capacity_max=10.0, capacity_steps=100)
    want = -jnp.mean(t['log_lik']) + 100.0 * abs(jnp.mean(t['kl']) - 3.0)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(metrics['capacity'], 3.0)
