"""hierarchies.py: Burda et al.'s two-stochastic-layer model, and on a linear-Gaussian
hierarchy with a closed-form log p(x) the hierarchical IWAE bound approaching it as k grows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import base_config, model_fns
from vae_jax import objectives as O
from vae_jax.errors import UserError
from vae_jax.keys import example_keys


def test_burda_two_layer_architecture_and_parameter_count():
    c = base_config()
    c.model.name = 'hvae'  # defaults: latents (100, 50), tanh layers (200, 200), (100, 100)
    fns = model_fns.build(c.model, (28, 28, 1), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))['params']
    counts = {k: sum(a.size for a in jax.tree.leaves(v)) for k, v in params.items()}
    # Burda et al. (2015), appendix C: q(h1|x) 784-200-200-(100 means, 100 log-variances),
    # q(h2|h1) 100-100-100-(50, 50), p(h1|h2) 50-100-100-(100, 100), p(x|h1) 100-200-200-784.
    dense = lambda *w: sum(a * b + b for a, b in zip(w, w[1:]))
    assert counts == {'q_0': dense(784, 200, 200, 200), 'q_1': dense(100, 100, 100, 100),
                      'p_0': dense(50, 100, 100, 200), 'decoder': dense(100, 200, 200, 784)}
    assert fns.groups == (100, 50) and fns.inference_params == ('q_0', 'q_1')
    z = fns.sample_prior(params, jax.random.key(1), 3, 0.0)
    # Temperature 0: the top group is 0 and each lower group its conditional mean.
    np.testing.assert_allclose(z[:, 100:], 0.0)
    assert fns.decode(params, z).shape == (3, 28, 28, 1, 1)
    c.model.prior = 'vampprior'
    with pytest.raises(UserError, match='own prior'):
        model_fns.build(c.model, (28, 28, 1), 0)


# A two-layer linear-Gaussian hierarchy: z2 ~ N(0, I_2), z1 | z2 ~ N(A z2 + a, diag s1),
# x | z1 ~ N(W z1 + b, σ² I_4), so x ~ N(W a + b, W (A Aᵀ + diag s1) Wᵀ + σ² I).
# `group_depth=0` makes every conditional of the HVAE affine, so it is exactly this model.
A = np.array([[1.0, 0.5], [-0.3, 0.8], [0.6, -0.7]], np.float32)
A_BIAS = np.array([0.2, 0.0, -0.1], np.float32)
S1 = np.array([0.3, 0.5, 0.2], np.float32)
W = np.array([[1.0, 0.0, 0.5], [0.3, 1.0, 0.0], [0.0, -0.6, 1.0], [0.7, 0.2, 0.1]], np.float32)
B = np.array([0.1, -0.3, 0.2, 0.0], np.float32)
SIGMA = 0.4


def _linear_hierarchy():
    c = base_config()
    c.model.name, c.model.likelihood, c.model.gaussian_scale = 'hvae', 'gaussian', SIGMA
    c.model.group_latents, c.model.group_hidden, c.model.group_depth = (3, 2), (1, 1), 0
    fns = model_fns.build(c.model, (4,), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((2, 4)))['params']
    dense = lambda kernel, bias: {'Dense_0': {'kernel': jnp.asarray(kernel),
                                              'bias': jnp.asarray(bias)}}
    # q: the exact conditionals p(z1|x) and p(z2|z1) of this model with their covariances
    # replaced by twice their diagonals: close, but with a gap that k samples must close.
    prior_cov = A @ A.T + np.diag(S1)
    post_cov = np.linalg.inv(np.linalg.inv(prior_cov) + W.T @ W / SIGMA**2)
    q0_kernel = W @ post_cov / SIGMA**2  # [4, 3]: x -> mean of z1
    q0_bias = post_cov @ (np.linalg.solve(prior_cov, A_BIAS) - W.T @ B / SIGMA**2)
    top_cov = np.linalg.inv(np.eye(2) + A.T @ np.diag(1 / S1) @ A)
    q1_kernel = (top_cov @ A.T @ np.diag(1 / S1)).T  # [3, 2]: z1 -> mean of z2
    params = {
        'decoder': dense(W.T, B),
        'p_0': dense(np.concatenate([A.T, np.zeros((2, 3))], 1),
                     np.concatenate([A_BIAS, np.log(S1)])),
        'q_0': dense(np.concatenate([q0_kernel, np.zeros((4, 3))], 1),
                     np.concatenate([q0_bias, np.log(2 * np.diag(post_cov))])),
        'q_1': dense(np.concatenate([q1_kernel, np.zeros((3, 2))], 1),
                     np.concatenate([-q1_kernel.T @ A_BIAS, np.log(2 * np.diag(top_cov))])),
    }
    return fns, jax.tree.map(lambda a: a.astype(np.float32), params)


def test_hierarchical_iwae_bound_approaches_the_exact_log_likelihood():
    fns, params = _linear_hierarchy()
    rng = np.random.default_rng(1)
    n = 256
    z2 = rng.normal(size=(n, 2))
    z1 = z2 @ A.T + A_BIAS + np.sqrt(S1) * rng.normal(size=(n, 3))
    x = (z1 @ W.T + B + SIGMA * rng.normal(size=(n, 4))).astype(np.float32)
    cov = W @ (A @ A.T + np.diag(S1)) @ W.T + SIGMA**2 * np.eye(4)
    exact = stats.multivariate_normal(W @ A_BIAS + B, cov).logpdf(x).mean()
    keys = example_keys(jax.random.key(2), jnp.arange(n))
    bound = jax.jit(lambda k: O.iwae_bound(params, jnp.asarray(x), None, keys, fns=fns,
                                           num_samples=k, chunk=64), static_argnums=0)
    gaps = {k: exact - float(jnp.mean(bound(k))) for k in (1, 10, 100, 2000)}
    print('log p(x) - IWAE bound, nats per example:', {k: round(v, 3) for k, v in gaps.items()})
    assert gaps[1] > gaps[10] > gaps[100] > gaps[2000] > -0.02
    assert gaps[1] > 0.5 and gaps[2000] < 0.05 * gaps[1]
    # k = 1 is the two-group ELBO: log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1,z2|x).
    t = O.elbo_terms(params, jnp.asarray(x), None, keys, fns)
    np.testing.assert_allclose(float(jnp.mean(t['log_lik'] - t['kl'])), exact - gaps[1],
                               rtol=1e-5)
    assert t['kl_groups'].shape == (n, 2)


def test_gated_two_level_vampprior_hierarchy():
    """Tomczak & Welling's HVAE (L=2): the VampPrior on z2 is the mixture of q(z2|·) itself
    at the pseudo-inputs, log p(z1|z2) is p(z1|z2)'s Gaussian, and sampling goes top-down."""
    c = base_config()
    c.model.name, c.model.hidden, c.model.latents = 'gated_hvae', (16,), 3
    c.model.prior, c.model.prior_components = 'vampprior', 4
    fns = model_fns.build(c.model, (4, 4, 1), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((2, 4, 4, 1)))['params']
    assert set(params) == {'q1', 'q2', 'p1', 'decoder', 'prior'}
    assert set(params['prior']) == {'pseudo_inputs'}  # no copy of the encoder
    assert fns.groups == (3, 3) and fns.inference_params == ('q1', 'q2')
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (5, 4, 4, 1)).astype(jnp.float32)
    keys = jax.random.split(jax.random.key(2), 5)
    def apply(name, *args):
        return fns.module.apply({'params': params}, *args,
                                method=lambda m, *a: getattr(m, name)(*a))

    _, lat = fns.infer(params, fns.features(params, x), None, keys)
    z1, z2 = np.asarray(lat.z[:, :3], np.float64), np.asarray(lat.z[:, 3:], np.float64)
    # log p(z2): the mixture of q2's posteriors at the clipped pseudo-inputs (scipy).
    u = jnp.clip(params['prior']['pseudo_inputs'], 0, 1)
    means, logvars = (np.asarray(a, np.float64) for a in apply('q2', u))
    ref = np.log(np.mean([stats.multivariate_normal(m, np.diag(np.exp(v))).pdf(z2)
                          for m, v in zip(means, logvars)], axis=0))
    np.testing.assert_allclose(lat.log_p[:, 1], ref, rtol=1e-5)
    # log p(z1 | z2) and log q(z1 | x, z2): diagonal Gaussians at the networks' outputs.
    pm, plv = (np.asarray(a, np.float64) for a in apply('p1', lat.z[:, 3:]))
    ref = [stats.multivariate_normal(m, np.diag(np.exp(v))).logpdf(z) for m, v, z in
           zip(pm, plv, z1)]
    np.testing.assert_allclose(lat.log_p[:, 0], ref, rtol=1e-5)
    qm, qlv = apply('q1', x.reshape(5, -1), lat.z[:, 3:])
    np.testing.assert_allclose(lat.mean[:, :3], qm, rtol=1e-6)
    assert float(jnp.max(qlv)) <= 2.0 and float(jnp.min(qlv)) >= -6.0
    # Temperature 0: z2 is one of the components' means, z1 the mean of p(z1 | z2).
    z = np.asarray(fns.sample_prior(params, jax.random.key(3), 6, 0.0))
    assert all(np.isclose(means, row).all(1).any() for row in z[:, 3:])
    np.testing.assert_allclose(z[:, :3], apply('p1', jnp.asarray(z[:, 3:]))[0],
                               rtol=1e-5, atol=1e-6)
    assert fns.decode(params, jnp.asarray(z)).shape == (6, 4, 4, 1, 1)
    c.model.posterior = 'iaf'
    with pytest.raises(UserError, match='Gaussian posteriors'):
        model_fns.build(c.model, (4, 4, 1), 0)
