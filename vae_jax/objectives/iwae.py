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

from vae_jax.errors import UserError
from vae_jax.keys import iwae_sample_key
from vae_jax.objectives.core import Objective


def iwae_log_weights(params: Any, x: jax.Array, y: Optional[jax.Array], h: Any,
                     keys: jax.Array, j: jax.Array, fns, *, flat: bool = False) -> jax.Array:
    """[b, m] importance log-weights of samples `j`: `sample_log_weights` without the latents."""
    return sample_log_weights(params, x, y, h, keys, j, fns, flat=flat)[0]


def sample_log_weights(params: Any, x: jax.Array, y: Optional[jax.Array], h: Any,
                       keys: jax.Array, j: jax.Array, fns, *, flat: bool = False):
    """Importance log-weights log p(x|z) + log p(z) - log q(z|x) of samples `j` of every
    example, decoded as one batch; log p(z) and log q(z|x) summed over the latent groups.

    Args:
      params, x, y, fns: see `core.elbo_terms`; h: `fns.features(params, x, y)`, computed
        once per example.
      keys: [b] example keys; j: [m] int sample numbers.
      flat: evaluate the likelihood on flattened pixels. Inside this double vmap XLA:CPU sums
        [28, 28, 1] some 40x slower than the same 784 values flat (the likelihood took 5x the
        decoder's time; flat, ~10%). The value is the same.

    Returns:
      [b, m] nats (`iwae_log_weights`); `sample_log_weights` also returns the samples'
      `model_fns.Latents`, leading dim b·m.
    """
    b, m = x.shape[0], j.shape[0]
    sample_keys = jax.vmap(jax.vmap(iwae_sample_key, (None, 0)), (0, None))(keys, j)
    # One inference + decoder call on all b * m samples: its matmuls are as large as the
    # chunk allows.
    h = jax.tree.map(lambda a: jnp.repeat(a, m, axis=0), h)
    y = None if y is None else jnp.repeat(y, m)
    out, lat = fns.infer(params, h, y, sample_keys.reshape(b * m))
    out = out.reshape(b, m, *out.shape[1:])
    log_prob = fns.likelihood.log_prob
    if flat:
        log_prob = lambda x, o: fns.likelihood.log_prob(x.reshape(-1), o.reshape(-1, o.shape[-1]))
    log_lik = jax.vmap(jax.vmap(log_prob, (None, 0)))(x, out)
    log_p_over_q = jnp.sum(lat.log_p, axis=-1) - jnp.sum(lat.log_q, axis=-1)
    return log_lik + log_p_over_q.reshape(b, m), lat


def log_mean_exp(log_w: jax.Array, axis: int = -1) -> jax.Array:
    """log (1/k) Σ_j exp(log_w_j) over `axis` (of size k), stable where exp underflows."""
    return jax.nn.logsumexp(log_w, axis=axis) - jnp.log(jnp.float32(log_w.shape[axis]))


def iwae_loss(params, x, y, keys, *, fns, num_samples: int):
    """Batch mean of minus the IWAE bound with k = `num_samples` (Burda et al. 2015, eq. 8).

    log-sum-exp keeps it finite where the weights themselves underflow. With k = 1 this is the
    ELBO with a Monte-Carlo KL, log q(z|x) - log p(z), in place of the analytic one.

    Returns:
      (loss [], metrics): batch means of 'loss' (-IWAE bound) and, when the model has one,
      the analytic 'kl'.
    """
    h = fns.features(params, x, y)
    log_w, lat = sample_log_weights(params, x, y, h, keys, jnp.arange(num_samples), fns)
    value = -jnp.mean(log_mean_exp(log_w))
    metrics = {'loss': value}
    if lat.kl_per_dim is not None:
        metrics['kl'] = jnp.mean(jnp.sum(lat.kl, axis=-1))
    return value, metrics


def iwae_bound(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
               fns, num_samples: int, chunk: int) -> jax.Array:
    """The k-sample bound on log p(x) of each example, streamed over sample chunks.

    The k samples are drawn `chunk` at a time and a running log-sum-exp (maximum and rescaled
    sum) is carried from chunk to chunk, so memory is O(batch × chunk × pixels) whatever k is.
    The encoder (`fns.features`) runs once per example; each chunk is one inference and decoder
    call on batch × chunk samples.

    Args:
      params, x [b, ...], y, fns: see `core.elbo_terms`.
      keys: [b] one key per example, from its index in the split (`keys.example_keys`).
      num_samples: k >= 1.
      chunk: samples per example decoded together; the value does not depend on it.

    Returns:
      [b] nats: logsumexp_j log w_j - log k.
    """
    chunk = min(chunk, num_samples)
    log_weights = functools.partial(iwae_log_weights, params, x, y, fns.features(params, x, y),
                                    keys, fns=fns, flat=True)

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

    init = (jnp.full(x.shape[:1], -jnp.inf, jnp.float32), jnp.zeros(x.shape[:1], jnp.float32))
    run_max, run_sum = jax.lax.fori_loop(0, -(-num_samples // chunk), add_chunk, init)
    return run_max + jnp.log(run_sum) - np.log(num_samples).astype(np.float32)


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
