"""The IWAE bound against the exact log p(x) of probabilistic PCA, and IWAE training.

pPCA, p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), has log p(x) = log N(x; b, WWᵀ + σ²I), and with
orthogonal columns of W its posterior is a diagonal Gaussian, so the encoder can be exact.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ml_collections

from vae_jax import base_config, configs, likelihoods, model_fns, steps
from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax.data import pipeline
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.errors import UserError
from vae_jax.evaluate import likelihood as L
from vae_jax.keys import example_keys

SIGMA = 0.5
W = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 2)))[0] * np.array([2.0, 1.0])
B = np.linspace(-1.0, 1.0, 6)
POST_VAR = 1.0 / (1.0 + np.sum(W**2, axis=0) / SIGMA**2)  # WᵀW is diagonal
SHIFT, INFLATE = 0.5, 2.0  # the imperfect encoder: mean + 0.5 sd, variance × 2


def _encode(params, x):
    """Exact posterior of pPCA, then shifted/inflated by params = (shift, inflate): [b, 2] each."""
    shift, inflate = params
    mean = (x - B) @ W * POST_VAR / SIGMA**2
    logvar = jnp.broadcast_to(jnp.log(POST_VAR * inflate), mean.shape)
    return mean + shift * np.sqrt(POST_VAR), logvar


def _decode(params, z):
    return (z @ W.T + B)[..., None]  # [b, 6, 1]: the Gaussian mean


class PPCAFns(model_fns.ModelFns):
    """The `ModelFns` of pPCA with the encoder `_encode`: N(0, I) prior, Gaussian likelihood
    (a one-layer model whose networks are plain functions instead of a linen module)."""

    def features(self, params, x, y=None):
        return _encode(params, x)

    def decode(self, params, z, y=None):
        return _decode(params, z)

    def kl_per_dim(self, params, mean, logvar):
        return jax.vmap(D.gaussian_kl_per_dim)(mean, logvar)

    def prior_log_prob(self, params, z):
        return jax.vmap(D.standard_normal_log_prob)(z)


FNS = PPCAFns(None, likelihoods.gaussian(ml_collections.ConfigDict({'gaussian_scale': SIGMA})))


@functools.lru_cache
def _data(n=5000):
    """x [n, 6] drawn from the model, and its exact log p(x) [n]."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2)) @ W.T + B + SIGMA * rng.normal(size=(n, 6))
    exact = stats.multivariate_normal(B, W @ W.T + SIGMA**2 * np.eye(6)).logpdf(x)
    return jnp.asarray(x, jnp.float32), exact


@functools.partial(jax.jit, static_argnames=('num_samples', 'chunk'))
def _bound(params, x, index, num_samples, chunk=64):
    keys = example_keys(jax.random.key(0), index)
    return O.iwae_bound(params, x, None, keys, fns=FNS, num_samples=num_samples, chunk=chunk)


def _encoder(shift, inflate):
    """Parameters of `_encode`: (0, 1) is the exact posterior."""
    return (jnp.float32(shift), jnp.float32(inflate))


# The tests share x [5000, 6] and these k, so that _bound compiles once per k (+1 for a split).
KS = (1, 10, 100, 1000)


def test_exact_posterior_gives_exact_log_likelihood_for_every_k():
    x, exact = _data()
    for k in KS:
        np.testing.assert_allclose(_bound(_encoder(0, 1), x, jnp.arange(len(x)), k), exact,
                                   atol=2e-4)


def test_bound_is_below_the_truth_tightens_with_k_and_reaches_it():
    x, exact = _data()  # 5000 examples: every assertion held for 30 of 30 seeds tried
    bounds = np.stack([_bound(_encoder(SHIFT, INFLATE), x, jnp.arange(len(x)), k) for k in KS])
    gaps = exact - bounds  # [4 values of k, examples]

    def se(a):
        return a.std(axis=-1) / np.sqrt(a.shape[-1])

    assert np.all(gaps.mean(1) > -3 * se(gaps)), gaps.mean(1)  # below, within MC noise
    # k = 1 is the ELBO: its expected gap is KL(q || exact posterior), per latent dimension
    # 0.5 (τ² + δ² - 1 - log τ²) for q = N(δ sd, τ² var) against N(0, var).
    kl = 2 * 0.5 * (INFLATE + SHIFT**2 - 1 - np.log(INFLATE))
    assert abs(gaps[0].mean() - kl) < 3 * se(gaps[0]), (gaps[0].mean(), kl)
    # Sample j is the same for every k, so paired differences show the tightening clearly:
    # strictly from 1 to 10 to 100; from 100 to 1000 the gain (~0.003) is below the noise.
    gains = np.diff(bounds, axis=0)
    assert np.all(gains[:2].mean(1) > 3 * se(gains[:2])), gains.mean(1)
    assert gains[2].mean() > -3 * se(gains[2]), gains.mean(1)
    assert gaps[2].mean() < 0.02 and abs(gaps[3].mean()) < 0.005, gaps.mean(1)


def test_value_does_not_depend_on_chunks_or_batches():
    x, _ = _data()
    params, n = _encoder(SHIFT, INFLATE), len(x)
    ref = _bound(params, x, jnp.arange(n), 100)  # chunks of 64 (the last one partial)
    split = np.concatenate([_bound(params, x[:n // 2], jnp.arange(n // 2), 100, 7),
                            _bound(params, x[n // 2:], jnp.arange(n // 2, n), 100, 7)])
    np.testing.assert_allclose(split, ref, rtol=1e-6)
    assert not np.allclose(_bound(params, x, jnp.arange(1, n + 1), 100), ref)  # keys matter


@jax.jit
def _k1_vs_elbo(params, x, keys):
    """Per example: the k=1 bound, log p(x|z) + log p(z) - log q(z|x) at the z of elbo_terms,
    and the ELBO; and the IWAE (k=1) and ELBO training losses."""
    t = O.elbo_terms(params, x, None, keys, FNS)
    mean, logvar = _encode(params, x)
    z = jax.vmap(D.reparameterize)(keys, mean, logvar)  # the sample elbo_terms draws
    same_z = (t['log_lik'] + jax.vmap(D.standard_normal_log_prob)(z)
              - jax.vmap(D.gaussian_log_prob)(z, mean, logvar))
    bound = O.iwae_bound(params, x, None, keys, fns=FNS, num_samples=1, chunk=4)
    iwae_loss = O.iwae_loss(params, x, None, keys, fns=FNS, num_samples=1)
    elbo_loss = O.vae_loss(params, x, None, keys, fns=FNS, beta=1.0)
    return bound, same_z, t['log_lik'] - t['kl'], iwae_loss, elbo_loss


def test_k1_is_the_single_sample_elbo_with_the_same_key():
    x, _ = _data()
    keys = example_keys(jax.random.key(5), jnp.arange(len(x)))
    bound, same_z, elbo, (loss, metrics), (elbo_loss, elbo_metrics) = _k1_vs_elbo(
        _encoder(SHIFT, INFLATE), x, keys)
    np.testing.assert_allclose(bound, same_z, rtol=1e-5)
    np.testing.assert_allclose(loss, -np.mean(same_z), rtol=1e-5)
    # The analytic KL in place of log q - log p changes the value, not its expectation.
    diff = np.asarray(bound - elbo)
    se = diff.std() / np.sqrt(len(diff))
    assert abs(diff.mean()) < 3 * se and abs(loss - elbo_loss) < 3 * se
    np.testing.assert_allclose(metrics['kl'], elbo_metrics['kl'], rtol=1e-6)


def _mnist_config(tfds_dir, **overrides):
    c = base_config()
    c.data.name = 'mnist'
    c.data.data_dir = tfds_dir
    c.data.binarize = 'dynamic'
    c.model.hidden = (32,)
    c.model.latents = 4
    c.update_from_flattened_dict(overrides)
    return c


@pytest.fixture(scope='module')
def mnist(tfds_dir):
    return TfdsSource('mnist', 'train[:64]', tfds_dir)


def _init_params(fns, source):
    return jax.jit(fns.module.init)(jax.random.key(0),
                                    jnp.zeros((1, *source.example_shape)))['params']


def test_dataset_bound_equals_the_pieces_on_any_devices_batches_and_chunks(mnist, tfds_dir):
    config = _mnist_config(tfds_dir, **{'eval.iwae_samples': 6, 'eval.iwae_chunk': 4,
                                        'eval.iwae_examples': 24, 'eval_batch_size': 8})
    fns = model_fns.build(config.model, mnist.example_shape, mnist.num_classes)
    params = _init_params(fns, mnist)
    calls = []
    result = L.evaluate_likelihood(params, fns, mnist, config, jax.random.key(3),
                                   devices=jax.devices()[:2],
                                   progress=lambda *a: calls.append(a))
    assert calls == [(8, 24), (16, 24), (24, 24)] and result['count'] == 24

    @jax.jit
    def pieces(batch):
        """The test set binarized once from the eval key, steps.eval_step and iwae_bound."""
        keys = example_keys(jax.random.key(3), batch['index'])
        x, y = steps.prepare_inputs(batch, keys, 'dynamic')
        bound = O.iwae_bound(params, x, y, keys, fns=fns, num_samples=6, chunk=6)
        sums = steps.eval_step(params, batch, jax.random.key(3), fns=fns, binarize='dynamic',
                               axis_name=None)
        return x, bound, sums

    # One device, one batch of 24, one chunk of 6: the same numbers.
    batch = {k: v[0] for k, v in next(pipeline.eval_batches(
        mnist, global_batch=24, local_device_count=1)).items()}
    x, bound, sums = pieces(batch)
    assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_allclose(result['nll'], -np.mean(bound), rtol=1e-5)
    for k in ('neg_elbo', 'recon', 'kl'):
        np.testing.assert_allclose(result[k], sums[k] / 24, rtol=1e-5)


@pytest.mark.parametrize('override, message', [
    ({'objective.name': 'vimco'}, 'unknown objective.name'),
    ({'objective.name': 'iwae', 'objective.num_samples': 0}, 'num_samples must be >= 1'),
    ({'objective.name': 'iwae', 'objective.beta': 4.0}, "'iwae' does not read objective.beta"),
    ({'objective.name': 'iwae', 'objective.free_bits': 0.5}, 'does not read objective.free_bits'),
    ({'objective.name': 'capacity', 'objective.num_samples': 5},
     "'capacity' does not read objective.num_samples=5; it reads gamma, capacity_max"),
    ({'objective.name': 'dip_vae', 'objective.dip_type': 'iii'}, 'unknown objective.dip_type'),
    ({'eval.iwae_samples': 0}, 'iwae_samples must be >= 1'),
    ({'eval.iwae_chunk': 0}, 'iwae_chunk must be >= 1'),
    ({'eval.iwae_examples': -1}, 'iwae_examples must be >= 0'),
])
def test_objective_and_eval_validation(override, message):
    c = base_config()
    c.update_from_flattened_dict(override)
    with pytest.raises(UserError, match=message):
        configs.validate(c)
    configs.validate(base_config())
