"""Reparameterization, KL and log-likelihoods: pure functions of ONE example.

Convention (the only one in vae_jax): every function here reduces one example to a scalar by
*summing* over its pixels / latent dimensions. Batch with `jax.vmap`; objectives then take the
*mean* over the batch.

Shapes: `z` is the latent size, `...` any event shape (e.g. [28, 28, 1]).
"""

import jax
import jax.numpy as jnp
import numpy as np

# numpy, not jnp: importing vae_jax must not start a JAX backend (jax.distributed.initialize()
# has to come first in a multi-process job).
_LOG_2PI = np.float32(np.log(2.0 * np.pi))


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Draws z ~ N(mean, exp(logvar)) as mean + sigma * eps (Kingma & Welling 2014, eq. 10).

    Args:
      key: PRNG key.
      mean: [z] posterior mean.
      logvar: [z] posterior log-variance.

    Returns:
      z: [z], differentiable with respect to `mean` and `logvar`.
    """
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def gaussian_kl_per_dim(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, 1)) for each latent dimension.

    Args:
      mean, logvar: [z].

    Returns:
      [z] nats, elementwise 0.5 * (mean^2 + var - 1 - logvar).
    """
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Analytic KL(q(z|x) || N(0, I)) of a diagonal Gaussian posterior.

    Args:
      mean, logvar: [z].

    Returns:
      [] nats, summed over latent dimensions.
    """
    return jnp.sum(gaussian_kl_per_dim(mean, logvar))


def gaussian_log_prob(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mean, diag(exp(logvar))), summed over all dimensions.

    Args:
      z, mean, logvar: [...] (logvar broadcasts, e.g. a scalar).

    Returns:
      [] nats.
    """
    return jnp.sum(gaussian_log_prob_per_dim(z, mean, jnp.broadcast_to(logvar, z.shape)))


def gaussian_log_prob_per_dim(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z_d; mean_d, exp(logvar_d)) of each dimension: [z] x3 -> [z] nats."""
    return -0.5 * (_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) summed over dimensions. z: [...] -> []."""
    return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z))


def bernoulli_log_likelihood(x: jax.Array, logits: jax.Array) -> jax.Array:
    """log Bernoulli(x; sigmoid(logits)), summed over pixels.

    x log σ(l) + (1 - x) log σ(-l) = x l - softplus(l) for any x, and softplus(l) =
    max(l, 0) + log1p(exp(-|l|)) is exact and finite for any l (no log(0) from a saturated
    sigmoid). One exp and one log1p per pixel instead of the two log-sigmoids of the textbook
    form: this is the elementwise work of every step and of the IWAE bound. For x in (0, 1) it
    is the continuous-valued cross-entropy most VAE papers on grayscale MNIST report.

    Args:
      x: [...] targets in [0, 1].
      logits: [...] decoder logits.

    Returns:
      [] nats.
    """
    return jnp.sum(x * logits - jnp.maximum(logits, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(logits))))


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_scale)^2), summed over pixels.

    Covers both the fixed-scale decoder (`log_scale` a scalar from the config) and the
    learned-scale decoder (`log_scale` an array from the network, shaped like `x`).

    Args:
      x: [...] targets.
      mean: [...] decoder mean.
      log_scale: [] or [...] log standard deviation.

    Returns:
      [] nats.
    """
    return gaussian_log_prob(x, mean, 2.0 * log_scale)


def gaussian_kl_between(mean_q, logvar_q, mean_p, logvar_p) -> jax.Array:
    """KL(N(mean_q, e^logvar_q) || N(mean_p, e^logvar_p)) per dimension: [...] x4 -> [...] nats.

    Not summed: the KL between two diagonal Gaussians (a posterior and a conditional prior)."""
    return 0.5 * (logvar_p - logvar_q
                  + (jnp.exp(logvar_q) + jnp.square(mean_q - mean_p)) * jnp.exp(-logvar_p) - 1)
