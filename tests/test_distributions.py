"""distributions.py against closed forms, scipy and Monte-Carlo estimates, under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_jax import distributions as D

jax.config.update('jax_enable_x64', False)


def test_reparameterize_moments_and_gradients():
    mean = jnp.array([0.5, -2.0, 3.0])
    logvar = jnp.array([0.0, -1.0, 1.5])
    keys = jax.random.split(jax.random.key(0), 200_000)
    z = jax.jit(jax.vmap(D.reparameterize, in_axes=(0, None, None)))(keys, mean, logvar)
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(z.var(0), jnp.exp(logvar), rtol=0.02)

    # d E[z] / d mean = 1 and d E[z^2] / d logvar = exp(logvar) (E[z^2] = mean^2 + exp(logvar)).
    def moments(m, lv):
        z = jax.vmap(D.reparameterize, in_axes=(0, None, None))(keys, m, lv)
        return jnp.sum(z.mean(0)), jnp.sum((z ** 2).mean(0))
    g_mean = jax.jit(jax.grad(lambda m: moments(m, logvar)[0]))(mean)
    g_logvar = jax.jit(jax.grad(lambda lv: moments(mean, lv)[1]))(logvar)
    np.testing.assert_allclose(g_mean, 1.0, atol=1e-5)
    np.testing.assert_allclose(g_logvar, jnp.exp(logvar), rtol=0.03)


def test_reparameterize_is_deterministic_in_key():
    m, lv = jnp.zeros(4), jnp.zeros(4)
    k = jax.random.key(3)
    np.testing.assert_array_equal(D.reparameterize(k, m, lv), D.reparameterize(k, m, lv))
    assert not np.allclose(D.reparameterize(k, m, lv),
                           D.reparameterize(jax.random.key(4), m, lv))


def test_gaussian_kl_closed_form_against_numerical_integration():
    for mu, lv in [(0.0, 0.0), (1.5, 0.3), (-0.7, -2.0)]:
        q, p = stats.norm(mu, np.exp(0.5 * lv)), stats.norm(0, 1)
        ref, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30)
        got = jax.jit(D.gaussian_kl)(jnp.array([mu]), jnp.array([lv]))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_gaussian_kl_matches_monte_carlo_estimate():
    mean = jnp.array([0.3, -1.0, 2.0, 0.0])
    logvar = jnp.array([-0.5, 0.4, -1.2, 0.0])
    keys = jax.random.split(jax.random.key(1), 400_000)

    @jax.jit
    def mc(keys):
        z = jax.vmap(D.reparameterize, in_axes=(0, None, None))(keys, mean, logvar)
        log_q = jax.vmap(D.gaussian_log_prob, in_axes=(0, None, None))(z, mean, logvar)
        log_p = jax.vmap(D.standard_normal_log_prob)(z)
        return jnp.mean(log_q - log_p), jnp.std(log_q - log_p) / jnp.sqrt(len(keys))

    estimate, stderr = mc(keys)
    analytic = D.gaussian_kl(mean, logvar)
    assert abs(estimate - analytic) < 4 * stderr + 1e-3
    np.testing.assert_allclose(D.gaussian_kl_per_dim(mean, logvar).sum(), analytic, rtol=1e-6)
    assert D.gaussian_kl(jnp.zeros(3), jnp.zeros(3)) == 0.0


def test_bernoulli_log_likelihood_matches_scipy_and_is_stable():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(28, 28, 1)).astype(np.float32) * 3
    x = (rng.random((28, 28, 1)) < 0.4).astype(np.float32)
    ref = stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-logits.astype(np.float64)))).sum()
    np.testing.assert_allclose(jax.jit(D.bernoulli_log_likelihood)(x, logits), ref, rtol=1e-5)
    # Saturated logits: the exact value is -|logit| for the wrong pixel, never -inf/NaN.
    got = D.bernoulli_log_likelihood(jnp.array([1.0, 0.0]), jnp.array([-200.0, -200.0]))
    np.testing.assert_allclose(got, -200.0, rtol=1e-6)


@pytest.mark.parametrize('log_scale', [np.float32(-1.3), 'array'])
def test_gaussian_log_likelihood_matches_scipy(log_scale):
    rng = np.random.default_rng(1)
    x, mean = rng.normal(size=(2, 5, 4)).astype(np.float32)
    if isinstance(log_scale, str):
        log_scale = rng.normal(size=(5, 4)).astype(np.float32) * 0.5
    ref = stats.norm.logpdf(x, mean, np.exp(log_scale)).sum()
    np.testing.assert_allclose(jax.jit(D.gaussian_log_likelihood)(x, mean, log_scale), ref,
                               rtol=1e-5)


def test_per_example_functions_vmap_like_a_loop():
    rng = np.random.default_rng(2)
    m, lv = rng.normal(size=(2, 6, 3)).astype(np.float32)
    batched = jax.vmap(D.gaussian_kl)(m, lv)
    np.testing.assert_allclose(batched, [D.gaussian_kl(a, b) for a, b in zip(m, lv)], rtol=1e-6)
