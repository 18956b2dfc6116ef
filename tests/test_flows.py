"""flows.py: the IAF's log-determinant and autoregressive structure, and on probabilistic PCA
an IAF posterior closing the ELBO gap that a diagonal Gaussian leaves."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from scipy import stats

from vae_jax import flows, likelihoods, model_fns, priors
from vae_jax import objectives as O
from vae_jax.keys import example_keys
from vae_jax.models import VAE


def test_made_masks_are_autoregressive():
    masks = flows.made_masks(5, 12, 2)
    connect = masks[0] @ masks[1] @ masks[2]  # [in, out]: paths from input i to output j
    assert np.all(connect[np.tril_indices(5)] == 0)  # output j reads inputs < j only
    assert np.all(connect[np.triu_indices(5, 1)] > 0)  # and every one of them


def test_iaf_log_det_matches_jacfwd_and_each_step_is_triangular():
    dims, context = 4, 3
    flow = flows.IAF(steps=3, hidden=16)
    z0 = jax.random.normal(jax.random.key(0), (1, dims))
    h = jax.random.normal(jax.random.key(1), (1, context))
    params = flow.init(jax.random.key(2), z0, h)
    # Away from the near-identity initialisation, so that the test sees a real Jacobian.
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(3), p.shape), params)

    def f(z):
        return flow.apply(params, z[None], h)[0][0]

    jac = jax.jacfwd(f)(z0[0])
    _, log_det = flow.apply(params, z0, h)
    np.testing.assert_allclose(log_det[0], np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-4,
                               atol=1e-5)
    assert np.abs(np.asarray(jac) - np.diag(np.diag(jac))).max() > 1e-3  # not diagonal

    step = flows.IAFStep(16)
    step_params = step.init(jax.random.key(4), z0, h)
    step_params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(5), p.shape),
                               step_params)
    step_jac = np.asarray(jax.jacfwd(lambda z: step.apply(step_params, z[None], h)[0][0])(z0[0]))
    assert np.all(np.abs(np.triu(step_jac, 1)) == 0)  # ∂z'_i/∂z_j = 0 for j > i
    assert np.abs(np.tril(step_jac, -1)).max() > 1e-3
    sigma_log_det = step.apply(step_params, z0, h)[1][0]
    np.testing.assert_allclose(sigma_log_det, np.sum(np.log(np.diag(step_jac))), rtol=1e-5)


# pPCA, p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I): the exact posterior is a Gaussian with a
# full covariance (I + WᵀW/σ²)⁻¹, strongly correlated for this W, which a diagonal Gaussian
# q cannot represent and two affine autoregressive steps can.
SIGMA = 0.3
W = np.array([[1.0, 0.9], [0.9, 1.0], [1.0, 1.0], [0.5, 0.4]], np.float32)
B = np.array([0.1, -0.2, 0.3, 0.0], np.float32)


class LinearDecoder(nn.Module):
    """x | z ~ N(Wz + b, σ²I): the true, fixed decoder."""

    @nn.compact
    def __call__(self, z, y=None):
        return (z @ W.T + B)[..., None]


class LinearEncoder(nn.Module):
    """Amortised linear q: mean and logvar affine in x; the flow's context too."""
    context: int = 0

    @nn.compact
    def __call__(self, x, y=None):
        mean, logvar = nn.Dense(2)(x), nn.Dense(2)(x)
        return (mean, logvar) if not self.context else (mean, logvar, nn.Dense(self.context)(x))


def _fit(flow, context, x, steps=1500):
    module = VAE(LinearEncoder(context), LinearDecoder(), priors.StandardNormal(2), flow)
    likelihood = likelihoods.gaussian(ml_collections.ConfigDict({'gaussian_scale': SIGMA}))
    fns = model_fns.ModelFns(module, likelihood)
    params = module.init(jax.random.key(0), x[:2])['params']
    opt = optax.adam(3e-3)
    keys_of = lambda s: example_keys(jax.random.fold_in(jax.random.key(1), s),
                                     jnp.arange(len(x)))

    def loss(p, s):
        t = O.elbo_terms(p, x, None, keys_of(s), fns)
        return -jnp.mean(t['log_lik'] - t['kl'])

    def step(s, state):
        p, o = state
        g = jax.grad(loss)(p, s)
        u, o = opt.update(g, o)
        return optax.apply_updates(p, u), o

    # All steps in one compiled loop: one dispatch instead of one per step.
    params, _ = jax.jit(lambda p, o: jax.lax.fori_loop(0, steps, step, (p, o)))(
        params, opt.init(params))
    # The ELBO averaged over many samples (the single-sample estimate's noise removed).
    elbo = float(jnp.mean(jax.jit(jax.vmap(lambda s: -loss(params, s)))(
        10_000 + jnp.arange(20))))
    return elbo


def test_iaf_closes_the_elbo_gap_of_a_diagonal_gaussian_on_ppca():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 2)) @ W.T + B + SIGMA * rng.normal(size=(512, 4))
    exact = stats.multivariate_normal(B, W @ W.T + SIGMA**2 * np.eye(4)).logpdf(x).mean()
    x = jnp.asarray(x, jnp.float32)
    gaussian_gap = exact - _fit(None, 0, x)
    iaf_gap = exact - _fit(flows.IAF(steps=2, hidden=16), 8, x)
    print(f'log p(x) - ELBO, nats per example: diagonal Gaussian {gaussian_gap:.3f}, '
          f'IAF {iaf_gap:.3f}')
    # The diagonal Gaussian's gap is KL(q || p(z|x)) of the best diagonal q: 2.43 nats here.
    assert gaussian_gap > 0.5
    assert -0.05 < iaf_gap < 0.1 * gaussian_gap
