"""Likelihoods p(x | z): one registry entry each, read by the model, the objectives and validation.

A `Likelihood` turns the decoder's output for one example, [..., k] with k = `num_params`,
into a log-density, a mean and a sample. `REGISTRY` maps `config.model.likelihood` to a
factory `(model_config) -> Likelihood`; adding one is a module with its factory and one line
here (README, "Adding a likelihood").

Every `log_prob` is per example and sums over pixels (nats), as everywhere in vae_jax.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from vae_jax import distributions as D, registry
from vae_jax.errors import UserError

# Lower bound on a learned log-scale: a decoder that can shrink its variance without limit drives
# the Gaussian log-density of nearly constant pixels (MNIST borders) to +inf.
MIN_LOG_SCALE = -5.0


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """p(x | z) of one example from its decoder output `params` [..., num_params].

    Attributes:
      num_params: k, the decoder outputs per pixel.
      log_prob: (x [...], params [..., k]) -> [] nats, summed over pixels. It must be a sum of
        independent per-pixel terms: `ModelFns.log_lik` and the IWAE bound call it on
        flattened pixels, x [pixels] and params [pixels, k] (so a likelihood that couples
        channels needs another interface).
      mean: params [..., k] -> E[x | z] [...].
      sample: (key, params [..., k]) -> x [...] ~ p(x | z).
      binary: the data are (or are binarized to) {0, 1} (allows data.binarize='dynamic').
    """
    num_params: int
    log_prob: Callable[[jax.Array, jax.Array], jax.Array]
    mean: Callable[[jax.Array], jax.Array]
    sample: Callable[[jax.Array, jax.Array], jax.Array]
    binary: bool = False


def bernoulli(model_config) -> Likelihood:
    """Independent Bernoulli pixels with logits from the decoder (k = 1)."""
    del model_config
    return Likelihood(
        num_params=1,
        log_prob=lambda x, p: D.bernoulli_log_likelihood(x, p[..., 0]),
        mean=lambda p: jax.nn.sigmoid(p[..., 0]),
        sample=lambda key, p: jax.random.bernoulli(key, jax.nn.sigmoid(p[..., 0])).astype(
            p.dtype),
        binary=True)


def gaussian(model_config) -> Likelihood:
    """Gaussian pixels with the decoder's mean (k = 1) and the fixed σ `model.gaussian_scale`."""
    scale = model_config.gaussian_scale

    def log_prob(x, p):
        return D.gaussian_log_likelihood(x, p[..., 0], jnp.log(jnp.asarray(scale, x.dtype)))
    return Likelihood(
        num_params=1, log_prob=log_prob, mean=lambda p: p[..., 0],
        sample=lambda key, p: p[..., 0] + scale * jax.random.normal(key, p.shape[:-1], p.dtype))


def learned_log_scale(raw: jax.Array) -> jax.Array:
    """The decoder's raw log-scale, softly bounded below by MIN_LOG_SCALE."""
    return MIN_LOG_SCALE + jax.nn.softplus(raw - MIN_LOG_SCALE)


def gaussian_learned(model_config) -> Likelihood:
    """Gaussian pixels with a mean and a per-pixel log-scale from the decoder (k = 2)."""
    del model_config

    def sample(key, p):
        noise = jax.random.normal(key, p.shape[:-1], p.dtype)
        return p[..., 0] + jnp.exp(learned_log_scale(p[..., 1])) * noise
    return Likelihood(
        num_params=2,
        log_prob=lambda x, p: D.gaussian_log_likelihood(x, p[..., 0], learned_log_scale(p[..., 1])),
        mean=lambda p: p[..., 0], sample=sample)


def observed_log_prob(likelihood: Likelihood, x: jax.Array, params: jax.Array,
                      observed: jax.Array) -> jax.Array:
    """log p(x_obs | z) = Σ_i observed_i log p(x_i | z) of one example: x [...], params
    [..., k], observed [...] (1 or True where x_i is seen) -> [] nats.

    Each pixel's term is `log_prob` of that pixel alone (a `log_prob` is a sum of independent
    per-pixel terms); a missing pixel's value is never read, so it may be NaN."""
    seen = jnp.asarray(observed, bool).reshape(-1)
    flat_x = jnp.where(seen, x.reshape(-1), 0.0)[:, None]
    per_pixel = jax.vmap(likelihood.log_prob)(flat_x, params.reshape(-1, 1, params.shape[-1]))
    return jnp.sum(jnp.where(seen, per_pixel, 0.0))


def check(model_config) -> None:
    """Validation of the fields the likelihoods read (raises UserError)."""
    if model_config.gaussian_scale <= 0:
        raise UserError(f'model.gaussian_scale must be positive, got '
                        f'{model_config.gaussian_scale}')


REGISTRY: dict[str, Callable[..., Likelihood] | str] = {
    'bernoulli': bernoulli,
    'gaussian': gaussian,
    'gaussian_learned': gaussian_learned,
}


def make(model_config) -> Likelihood:
    """The likelihood `model_config.likelihood` names (an entry is a factory or 'module:factory')."""
    return registry.lookup(REGISTRY, model_config.likelihood, 'model.likelihood')(model_config)
