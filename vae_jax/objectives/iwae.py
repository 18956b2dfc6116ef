"""The importance-weighted bound (Burda et al. 2015): the IWAE objective and its streamed
evaluation with any number of samples.

    log p(x) >= log (1/k) sum_j p(x, z_j) / q(z_j | x),   z_1..k ~ q(z | x),

tightening to log p(x) as k grows. Sample j of an example uses `keys.iwae_sample_key(key, j)`
with the example's key: sample 0 is the very z of the single-sample ELBO with that key, and a
sample's noise depends on neither k, the chunking, the batch nor the device count.
"""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions as D
from vae_jax.errors import UserError
from vae_jax.keys import iwae_sample_key
from vae_jax.objectives.core import Objective


def iwae_log_weights(params: Any, x: jax.Array, y: Optional[jax.Array], mean: jax.Array,
                     logvar: jax.Array, keys: jax.Array, j: jax.Array, fns, *,
                     flat: bool = False) -> jax.Array:
    """Importance log-weights log p(x|z) + log p(z) - log q(z|x) of samples `j` of every
    example, decoded as one batch.

    Args:
      params, x, y, fns: see `core.elbo_terms`; mean, logvar: [b, z] the encoder's output.
      keys: [b] example keys; j: [m] int sample numbers.
      flat: evaluate the likelihood on flattened pixels. Inside this double vmap XLA:CPU sums
        [28, 28, 1] some 40x slower than the same 784 values flat (the likelihood took 5x the
        decoder's time; flat, ~10%). The value is the same.

    Returns:
      [b, m] nats.
    """
    b, m = x.shape[0], j.shape[0]
    sample_keys = jax.vmap(jax.vmap(iwae_sample_key, (None, 0)), (0, None))(keys, j)
    z = jax.vmap(jax.vmap(D.reparameterize, (0, None, None)))(sample_keys, mean, logvar)
    y = None if y is None else jnp.repeat(y, m)
    # One decoder call on all b * m latents: its matmuls are as large as the chunk allows.
    out = fns.decode(params, z.reshape(b * m, -1), y)
    out = out.reshape(b, m, *out.shape[1:])
    log_prob = fns.likelihood.log_prob
    if flat:
        log_prob = lambda x, o: fns.likelihood.log_prob(x.reshape(-1), o.reshape(-1, o.shape[-1]))
    log_lik = jax.vmap(jax.vmap(log_prob, (None, 0)))(x, out)
    log_pz = fns.prior_log_prob(params, z.reshape(b * m, -1)).reshape(b, m)
    log_qz = jax.vmap(jax.vmap(D.gaussian_log_prob, (0, None, None)))(z, mean, logvar)
    return log_lik + log_pz - log_qz


def iwae_loss(params, x, y, keys, *, fns, num_samples: int):
    """Batch mean of minus the IWAE bound with k = `num_samples` (Burda et al. 2015, eq. 8).

    log-sum-exp keeps it finite where the weights themselves underflow. With k = 1 this is the
    ELBO with a Monte-Carlo KL, log q(z|x) - log p(z), in place of the analytic one.

    Returns:
      (loss [], metrics): batch means of 'loss' (-IWAE bound) and, when the prior has one,
      the analytic 'kl'.
    """
    mean, logvar = fns.encode(params, x, y)
    log_w = iwae_log_weights(params, x, y, mean, logvar, keys, jnp.arange(num_samples), fns)
    bound = jax.nn.logsumexp(log_w, axis=1) - jnp.log(num_samples)
    value = -jnp.mean(bound)
    metrics = {'loss': value}
    kl_per_dim = fns.kl_per_dim(params, mean, logvar)
    if kl_per_dim is not None:
        metrics['kl'] = jnp.mean(jnp.sum(kl_per_dim, axis=-1))
    return value, metrics


def iwae_bound(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
               fns, num_samples: int, chunk: int) -> jax.Array:
    """The k-sample bound on log p(x) of each example, streamed over sample chunks.

    The k samples are drawn `chunk` at a time and a running log-sum-exp (maximum and rescaled
    sum) is carried from chunk to chunk, so memory is O(batch × chunk × pixels) whatever k is.
    The encoder runs once per example; each chunk is one decoder call on batch × chunk latents.

    Args:
      params, x [b, ...], y, fns: see `core.elbo_terms`.
      keys: [b] one key per example, from its index in the split (`keys.example_keys`).
      num_samples: k >= 1.
      chunk: samples per example decoded together; the value does not depend on it.

    Returns:
      [b] nats: logsumexp_j log w_j - log k.
    """
    chunk = min(chunk, num_samples)
    mean, logvar = fns.encode(params, x, y)
    log_weights = functools.partial(iwae_log_weights, params, x, y, mean, logvar, keys,
                                    fns=fns, flat=True)

    def add_chunk(c, carry):
        run_max, run_sum = carry  # [b], [b]: log-sum-exp so far = run_max + log(run_sum)
        j = c * chunk + jnp.arange(chunk)
        log_w = jnp.where(j < num_samples, log_weights(j), -jnp.inf)  # [b, chunk]; pads masked
        new_max = jnp.maximum(run_max, jnp.max(log_w, axis=1))
        # Rescaling the sum to the new maximum keeps every exp <= 1: the weights themselves,
        # ~e^-100 for an MNIST digit, are below float32's smallest value.
        run_sum = (run_sum * jnp.exp(run_max - new_max)
                   + jnp.sum(jnp.exp(log_w - new_max[:, None]), axis=1))
        return new_max, run_sum

    init = (jnp.full(x.shape[:1], -jnp.inf, mean.dtype), jnp.zeros(x.shape[:1], mean.dtype))
    run_max, run_sum = jax.lax.fori_loop(0, -(-num_samples // chunk), add_chunk, init)
    return run_max + jnp.log(run_sum) - np.log(num_samples).astype(mean.dtype)


def loss(params, x, y, keys, ctx):
    value, metrics = iwae_loss(params, x, y, keys, fns=ctx.fns,
                               num_samples=ctx.settings['num_samples'])
    return value, (metrics, None)


def check(config) -> None:
    o = config.objective
    if o.num_samples < 1:
        raise UserError(f'objective.num_samples must be >= 1, got {o.num_samples}')


OBJECTIVE = Objective(
    loss=loss,
    defaults={'num_samples': 1},  # k
    check=check)
