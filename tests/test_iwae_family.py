"""MIWAE, CIWAE and PIWAE (Rainforth et al. 2018) at their limiting settings, and PIWAE's
split of the gradient between the generative and the inference network."""

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import base_config, model_fns, objectives
from vae_jax.keys import example_keys
from vae_jax.objectives.core import Context
from vae_jax.objectives.iwae import iwae_log_weights

X = jax.random.bernoulli(jax.random.key(0), 0.3, (8, 12)).astype(jnp.float32)
KEYS = example_keys(jax.random.key(1), jnp.arange(8))


def _model():
    c = base_config()
    c.model.hidden, c.model.latents = (16,), 3
    fns = model_fns.build(c.model, (12,), 0)
    return fns, fns.module.init(jax.random.key(2), X)['params']


FNS, PARAMS = _model()


def _loss(name, params=PARAMS, **settings):
    ctx = Context(fns=FNS, settings={k: jnp.asarray(v) if isinstance(v, float) else v
                                     for k, v in settings.items()}, step=jnp.asarray(0))
    return objectives.get(name).loss(params, X, None, KEYS, ctx)[0]


def _log_w(n, params=PARAMS):
    return iwae_log_weights(params, X, None, FNS.features(params, X), KEYS, jnp.arange(n), FNS)


def _log_mean_exp(a, axis=-1):
    return jax.nn.logsumexp(a, axis=axis) - np.log(a.shape[axis])


def test_miwae_is_iwae_with_one_bound_and_an_elbo_with_one_sample_per_bound():
    iwae = _loss('iwae', num_samples=6)
    np.testing.assert_allclose(_loss('miwae', num_bounds=1, num_samples=6), iwae, rtol=1e-6)
    # K = 1: the ELBO with the KL estimated from M samples, the mean of the M log-weights.
    np.testing.assert_allclose(_loss('miwae', num_bounds=6, num_samples=1),
                               -jnp.mean(_log_w(6)), rtol=1e-6)
    # In between, by hand: bounds over samples 0-2 and 3-5.
    log_w = np.asarray(_log_w(6), np.float64)
    by_hand = -np.mean((_log_mean_exp(log_w[:, :3]) + _log_mean_exp(log_w[:, 3:])) / 2)
    np.testing.assert_allclose(_loss('miwae', num_bounds=2, num_samples=3), by_hand, rtol=1e-5)
    # Jensen: IWAE(6) >= MIWAE(2, 3) >= ELBO, as bounds (losses in the other order).
    assert iwae < by_hand < -np.mean(log_w)


def test_ciwae_interpolates_between_the_elbo_and_iwae():
    k = 5
    iwae = _loss('iwae', num_samples=k)
    elbo = -jnp.mean(_log_w(k))
    np.testing.assert_allclose(_loss('ciwae', num_samples=k, elbo_weight=0.0), iwae, rtol=1e-6)
    np.testing.assert_allclose(_loss('ciwae', num_samples=k, elbo_weight=1.0), elbo, rtol=1e-6)
    np.testing.assert_allclose(_loss('ciwae', num_samples=k, elbo_weight=0.3),
                               0.3 * elbo + 0.7 * iwae, rtol=1e-5)


def _split(grads):
    inference = {k: v for k, v in grads.items() if k in FNS.inference_params}
    generative = {k: v for k, v in grads.items() if k not in FNS.inference_params}
    return inference, generative


def _assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)


def test_piwae_gives_the_decoder_iwae_and_the_encoder_miwae_gradients():
    m, k = 2, 3
    piwae = _loss('piwae', num_bounds=m, num_samples=k)
    np.testing.assert_allclose(piwae, _loss('iwae', num_samples=m * k), rtol=1e-6)  # its value
    grad = lambda name, **s: jax.jit(jax.grad(lambda p: _loss(name, p, **s)))(PARAMS)
    p_inf, p_gen = _split(grad('piwae', num_bounds=m, num_samples=k))
    _, iwae_gen = _split(grad('iwae', num_samples=m * k))
    miwae_inf, _ = _split(grad('miwae', num_bounds=m, num_samples=k))
    assert set(p_inf) == {'encoder'} and set(p_gen) == {'decoder'}
    _assert_trees_close(p_gen, iwae_gen)
    _assert_trees_close(p_inf, miwae_inf)
    # and M = 1 is IWAE(K) for both networks.
    _assert_trees_close(grad('piwae', num_bounds=1, num_samples=k), grad('iwae', num_samples=k))
