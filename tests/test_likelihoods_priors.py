"""The likelihood and prior registries: densities against scipy, means and samples by
Monte Carlo, and the model bundle (`ModelFns`) wiring them to the networks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from vae_jax import base_config, configs, likelihoods, model_fns, priors, train
from vae_jax.errors import UserError

MODEL = ml_collections.ConfigDict({'gaussian_scale': 0.3, 'latents': 3})


def _scipy_log_prob(name, x, p):
    if name == 'bernoulli':
        return stats.bernoulli.logpmf(x, 1 / (1 + np.exp(-p[..., 0]))).sum()
    if name == 'gaussian':
        return stats.norm.logpdf(x, p[..., 0], 0.3).sum()
    sigma = np.exp(likelihoods.MIN_LOG_SCALE + np.logaddexp(0, p[..., 1] - likelihoods.MIN_LOG_SCALE))
    return stats.norm.logpdf(x, p[..., 0], sigma).sum()


@pytest.mark.parametrize('name', sorted(likelihoods.REGISTRY))
def test_likelihood_log_prob_mean_and_sample(name):
    lik = likelihoods.REGISTRY[name](MODEL)
    rng = np.random.default_rng(0)
    p = rng.normal(size=(4, 5, lik.num_params)).astype(np.float32)
    x = (rng.random((4, 5)) < 0.5).astype(np.float32) if lik.binary else rng.normal(
        size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(jax.jit(lik.log_prob)(x, p), _scipy_log_prob(name, x, p),
                               rtol=1e-5)
    # The sample's average is the mean; the flattened log-density equals the shaped one.
    draws = jax.vmap(lik.sample, (0, None))(jax.random.split(jax.random.key(1), 20000), p)
    mean = np.asarray(lik.mean(p))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.05)
    assert draws.shape == (20000, 4, 5) and not np.allclose(draws[0], draws[1])
    np.testing.assert_allclose(lik.log_prob(x.reshape(-1), p.reshape(-1, lik.num_params)),
                               lik.log_prob(x, p), rtol=1e-6)


def test_learned_log_scale_is_bounded_below():
    lik = likelihoods.gaussian_learned(MODEL)
    x = jnp.zeros((3,))
    tiny = jnp.stack([jnp.zeros(3), jnp.full(3, -1e4)], -1)
    assert np.isfinite(float(lik.log_prob(x, tiny)))
    np.testing.assert_allclose(
        lik.log_prob(x, tiny), stats.norm.logpdf(0, 0, np.exp(likelihoods.MIN_LOG_SCALE)) * 3,
        rtol=1e-5)


def test_standard_normal_prior():
    prior = priors.StandardNormal(3)
    z = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(prior.apply({}, z, method=prior.log_prob),
                               stats.norm.logpdf(z).sum(-1), rtol=1e-5)
    samples = prior.apply({}, jax.random.key(0), 50000, method=prior.sample)
    np.testing.assert_allclose(np.cov(np.asarray(samples).T), np.eye(3), atol=0.03)
    # The analytic KL per dimension against a Monte-Carlo estimate of E_q[log q - log p].
    mean, logvar = jnp.array([[0.5, -1.0, 0.0]]), jnp.array([[0.2, -0.5, 1.0]])
    kl = prior.apply({}, mean, logvar, method=prior.kl_per_dim)[0]
    eps = jax.random.normal(jax.random.key(1), (200000, 3))
    zq = mean + jnp.exp(0.5 * logvar) * eps
    mc = (stats.norm.logpdf(zq, mean, np.exp(0.5 * logvar)) - stats.norm.logpdf(zq)).mean(0)
    np.testing.assert_allclose(kl, mc, atol=0.01)


def test_model_fns_bundle_wires_network_likelihood_and_prior():
    c = base_config()
    c.model.hidden, c.model.latents, c.model.likelihood = (8,), 2, 'gaussian'
    fns = model_fns.build(c.model, (5,), 0)
    x = jnp.linspace(-1, 1, 15).reshape(3, 5)
    params = fns.module.init(jax.random.key(0), x)['params']
    assert set(params) == {'encoder', 'decoder'}  # the standard normal prior has none
    mean, logvar = fns.encode(params, x)
    out = fns.decode(params, mean)
    assert mean.shape == logvar.shape == (3, 2) and out.shape == (3, 5, 1)
    lik = likelihoods.gaussian(c.model)
    np.testing.assert_allclose(fns.log_lik(x, out), [lik.log_prob(a, b) for a, b in zip(x, out)],
                               rtol=1e-6)
    np.testing.assert_allclose(fns.decode_mean(params, mean), out[..., 0])
    np.testing.assert_allclose(fns.prior_log_prob(params, mean),
                               stats.norm.logpdf(np.asarray(mean)).sum(-1), rtol=1e-5)
    assert fns.analytic_kl and fns.sample_prior(params, jax.random.key(1), 4).shape == (4, 2)


@pytest.mark.parametrize('field, value, message', [
    ('model.likelihood', 'poisson', 'unknown model.likelihood'),
    ('model.prior', 'vamp', 'unknown model.prior'),
    ('model.gaussian_scale', 0.0, 'gaussian_scale must be positive'),
    ('model.upsample', 'nearest', 'unknown model.upsample'),
    ('model.kernel', 3, 'upsample=transposed needs an even model.kernel'),
])
def test_registry_names_are_validated(field, value, message):
    c = base_config()
    c.model.encoder = 'conv'
    c.update_from_flattened_dict({field: value})
    with pytest.raises(UserError, match=message):
        configs.validate(c)


def test_dynamic_binarization_needs_a_likelihood_of_binary_data():
    c = base_config()
    c.data.binarize, c.model.likelihood = 'dynamic', 'gaussian'
    with pytest.raises(UserError, match="'gaussian' is not"):
        configs.validate(c)


def test_gaussian_mixture_prior_against_scipy_and_by_sampling():
    prior = priors.GaussianMixture(latents=2, components=3)
    params = {'means': jnp.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 2.0]]),
              'logvars': jnp.log(jnp.array([[1.0, 0.5], [0.2, 0.2], [2.0, 1.0]]))}
    z = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32) * 2
    want = np.log(np.mean([stats.multivariate_normal(m, np.diag(np.exp(lv))).pdf(z)
                           for m, lv in zip(params['means'], params['logvars'])], axis=0))
    got = prior.apply({'params': params}, z, method=prior.log_prob)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    samples = np.asarray(prior.apply({'params': params}, jax.random.key(0), 60000,
                                     method=prior.sample))
    np.testing.assert_allclose(samples.mean(0), np.asarray(params['means']).mean(0), atol=0.03)
    var = np.mean(np.exp(params['logvars']) + params['means'] ** 2, 0) - params['means'].mean(0) ** 2
    np.testing.assert_allclose(samples.var(0), var, rtol=0.03)
    assert not prior.analytic_kl
    assert prior.apply({'params': params}, z, z, method=prior.kl_per_dim) is None


def test_mixture_prior_trains_with_a_monte_carlo_kl(tiny_toy2d_config, tmp_path):
    """Without a closed-form KL the ELBO uses log q(z|x) - log p(z) at the sample; the
    mixture's parameters train with the model; free bits are refused."""
    c = tiny_toy2d_config()
    c.unlock()
    c.model.prior, c.model.prior_components = 'gaussian_mixture', 4
    configs.validate(c)
    state = train.train_and_evaluate(c, tmp_path)
    assert state.params['prior']['means'].shape == (4, c.model.latents)
    from vae_jax import keys, steps
    initial = steps.init_train_state(keys.run_keys(c.seed)[keys.INIT],
                                     model_fns.build(c.model, (2,), 5), c, (2,),
                                     c.num_steps).params['prior']['means']
    assert not np.allclose(state.params['prior']['means'], initial)
    c.objective.free_bits = 0.5
    with pytest.raises(UserError, match='free_bits needs an analytic KL per dimension'):
        configs.validate(c)


def test_vampprior_is_the_mixture_of_the_encoders_posteriors_at_its_pseudo_inputs():
    c = base_config()
    c.model.hidden, c.model.latents = (16,), 3
    c.model.prior, c.model.prior_components = 'vampprior', 5
    fns = model_fns.build(c.model, (4, 4, 1), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((2, 4, 4, 1)))['params']
    assert params['prior']['pseudo_inputs'].shape == (5, 4, 4, 1) and not fns.analytic_kl
    # The encoder's own posteriors at the (clipped) pseudo-inputs, as the numpy reference.
    u = np.clip(np.asarray(params['prior']['pseudo_inputs']), 0, 1)
    means, logvars = (np.asarray(a, np.float64) for a in fns.encode(params, jnp.asarray(u)))
    z = np.random.default_rng(0).normal(size=(7, 3))
    ref = np.log(np.mean([stats.multivariate_normal(m, np.diag(np.exp(v))).pdf(z)
                          for m, v in zip(means, logvars)], axis=0))
    np.testing.assert_allclose(fns.prior_log_prob(params, jnp.asarray(z, jnp.float32)), ref,
                               rtol=1e-5)
    # The prior's gradient reaches the shared encoder and the pseudo-inputs.
    grads = jax.grad(lambda p: fns.prior_log_prob(p, jnp.asarray(z, jnp.float32)).sum())(params)
    assert set(grads) == {'encoder', 'decoder', 'prior'}
    assert float(jnp.abs(grads['encoder']['Dense_0']['kernel']).sum()) > 0
    assert float(jnp.abs(grads['prior']['pseudo_inputs']).sum()) > 0
    # Sampling: the mixture's mean and variance by Monte Carlo (n = 40000; 5 standard errors).
    draws = np.asarray(fns.sample_prior(params, jax.random.key(1), 40_000))
    mix_mean = means.mean(0)
    mix_var = (np.exp(logvars) + means**2).mean(0) - mix_mean**2
    np.testing.assert_allclose(draws.mean(0), mix_mean, atol=5 * np.sqrt(mix_var / 40_000).max())
    np.testing.assert_allclose(draws.var(0), mix_var, rtol=0.05)
    c.model.conditional = True
    with pytest.raises(UserError, match='unconditional encoder'):
        model_fns.build(c.model, (4, 4, 1), 10)
