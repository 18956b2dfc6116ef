"""objectives.py: likelihood dispatch, β-ELBO, free bits (incl. device invariance), warm-up."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions as D
from vae_jax import objectives as O
from vae_jax import likelihoods, model_fns


class LinearFns(model_fns.ModelFns):
    """A one-layer `ModelFns` of plain functions: encoder mean x @ p with logvar -1, Bernoulli
    decoder z @ p.T, standard normal prior."""

    def features(self, p, x, y=None):
        return x @ p, jnp.full_like(x, -1.0)

    def decode(self, p, z, y=None):
        return (z @ p.T)[..., None]

    def kl_per_dim(self, p, mean, logvar):
        return jax.vmap(D.gaussian_kl_per_dim)(mean, logvar)

    def prior_log_prob(self, p, z):
        return jax.vmap(D.standard_normal_log_prob)(z)


def test_negative_elbo_and_mean():
    assert O.negative_elbo(jnp.array(-10.0), jnp.array(3.0), 4.0) == 22.0
    logits = jnp.array([[[0.0]], [[5.0]]])
    np.testing.assert_allclose(likelihoods.bernoulli(None).mean(logits),
                               [[0.5], [jax.nn.sigmoid(5.0)]])


def test_free_bits_value_and_gradient():
    kl = jnp.array([[0.1, 2.0, 0.6], [0.3, 4.0, 0.2]])  # batch means: 0.2, 3.0, 0.4
    lam = 0.5
    value = jnp.mean(O.free_bits_kl(kl, lam))
    np.testing.assert_allclose(value, 0.5 + 3.0 + 0.5, rtol=1e-6)
    grad = jax.grad(lambda k: jnp.mean(O.free_bits_kl(k, lam)))(kl)
    np.testing.assert_allclose(grad, [[0, 0.5, 0], [0, 0.5, 0]])  # dims under λ get no gradient


def test_free_bits_uses_the_global_batch_across_devices():
    """Dim 0 has a global mean over λ but a per-device mean under it on device 0."""
    kl = jnp.array([[0.1, 1.0], [0.1, 1.0], [2.0, 1.0], [2.0, 1.0]])
    lam = 0.5
    single = jax.grad(lambda k: jnp.mean(O.free_bits_kl(k, lam)))(kl)
    per_device = kl.reshape(2, 2, 2)

    def device_grads(axis_name):
        fn = functools.partial(O.free_bits_kl, free_bits=lam, axis_name=axis_name)
        # Each device differentiates its local batch mean; /2 makes it a share of the global mean.
        return jax.pmap(lambda k: jax.grad(lambda k: jnp.mean(fn(k)))(k) / 2, axis_name='batch',
                        devices=jax.devices()[:2])(per_device).reshape(4, 2)

    np.testing.assert_allclose(device_grads('batch'), single, rtol=1e-6)
    # Without the collective, device 0 would see dim 0 under λ and drop its gradient.
    assert not np.allclose(device_grads(None), single)


def test_beta_schedule():
    s = O.beta_schedule(4.0, 100)
    np.testing.assert_allclose([s(0), s(50), s(100), s(1000)], [0.0, 2.0, 4.0, 4.0])
    assert O.beta_schedule(2.0, 0)(7) == 2.0


def test_vae_loss_terms_are_consistent():
    """With a fixed linear 'model' the terms equal the distributions' functions."""
    w = jnp.array([[1.0, -1.0], [0.5, 2.0]])

    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = jax.random.split(jax.random.key(0), 3)
    loss, m = O.vae_loss(w, x, None, keys, fns=LinearFns(None, likelihoods.bernoulli(None)), beta=2.0)
    mean = x @ w
    kl = jax.vmap(D.gaussian_kl)(mean, jnp.full_like(mean, -1.0))
    np.testing.assert_allclose(m['kl'], kl.mean(), rtol=1e-6)
    np.testing.assert_allclose(loss, m['recon'] + 2.0 * m['kl'], rtol=1e-6)
    np.testing.assert_allclose(m['neg_elbo'], m['recon'] + m['kl'], rtol=1e-6)
