"""VAE objectives built from the per-example functions in `distributions`.

Reduction convention: per-example terms are sums over pixels and latent dimensions (nats);
every batch quantity returned here is the *mean over the batch* of those sums.
"""

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from vae_jax import distributions as D
from vae_jax.errors import UserError

LIKELIHOODS = ('bernoulli', 'gaussian', 'gaussian_learned')
# Lower bound on a learned log-scale: a decoder that can shrink its variance without limit drives
# the Gaussian log-density of nearly constant pixels (MNIST borders) to +inf.
MIN_LOG_SCALE = -5.0


def log_likelihood(x: jax.Array, params: jax.Array, likelihood: str,
                   log_scale: float = 0.0) -> jax.Array:
    """log p(x | z) of one example from the decoder's output.

    Args:
      x: [...] one example.
      params: [..., k] decoder output for it: Bernoulli logits (k=1), a Gaussian mean (k=1,
        fixed log-scale `log_scale`), or a mean and a raw log-scale (k=2, 'gaussian_learned').
      likelihood: 'bernoulli' | 'gaussian' | 'gaussian_learned'.
      log_scale: the fixed log standard deviation of 'gaussian'.

    Returns:
      [] nats, summed over pixels.
    """
    if likelihood == 'bernoulli':
        return D.bernoulli_log_likelihood(x, params[..., 0])
    if likelihood == 'gaussian':
        return D.gaussian_log_likelihood(x, params[..., 0], jnp.asarray(log_scale, x.dtype))
    if likelihood == 'gaussian_learned':
        learned = MIN_LOG_SCALE + jax.nn.softplus(params[..., 1] - MIN_LOG_SCALE)
        return D.gaussian_log_likelihood(x, params[..., 0], learned)
    raise UserError(f'unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}')


def likelihood_mean(params: jax.Array, likelihood: str) -> jax.Array:
    """E[x | z] from the decoder output: [..., k] -> [...] (sigmoid of logits, or the mean)."""
    if likelihood == 'bernoulli':
        return jax.nn.sigmoid(params[..., 0])
    return params[..., 0]


def negative_elbo(log_lik: jax.Array, kl: jax.Array, beta: float = 1.0) -> jax.Array:
    """β-weighted negative ELBO of one example: -log p(x|z) + β KL (Higgins et al. 2017).

    Args:
      log_lik: [] log p(x | z) for a posterior sample z.
      kl: [] KL(q(z|x) || p(z)).
      beta: KL weight; 1 gives the ELBO of Kingma & Welling (2014).

    Returns:
      [] nats.
    """
    return -log_lik + beta * kl


def free_bits_kl(kl_per_dim: jax.Array, free_bits: float,
                 axis_name: Optional[str] = None) -> jax.Array:
    """KL with free bits (Kingma et al. 2016): each dimension costs at least `free_bits` nats.

    The floor applies to the KL of each latent dimension averaged over the *global* batch
    (`lax.pmean` over `axis_name`), so the objective does not depend on how the batch is split
    across devices. A dimension below the floor gets no gradient from the KL term.

    Args:
      kl_per_dim: [b, z] per-example, per-dimension KL.
      free_bits: λ >= 0 nats per dimension.
      axis_name: pmap/shard_map axis the batch is split over, or None.

    Returns:
      [b] per-example KL term whose batch mean is sum_d max(λ, mean_b KL_bd).
    """
    batch_kl = jnp.mean(kl_per_dim, axis=0)
    if axis_name is not None:
        batch_kl = jax.lax.pmean(batch_kl, axis_name)
    above = jax.lax.stop_gradient(batch_kl > free_bits)
    return jnp.sum(jnp.where(above, kl_per_dim, free_bits), axis=-1)


def beta_schedule(beta: float, warmup_steps: int) -> optax.Schedule:
    """KL weight at each step: linear warm-up 0 -> β over `warmup_steps` (Bowman et al. 2016)."""
    if warmup_steps <= 0:
        return optax.constant_schedule(beta)
    return optax.linear_schedule(0.0, beta, warmup_steps)


def elbo_terms(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
               apply_fn: Callable, encode: Callable, decode: Callable, likelihood: str,
               log_scale: float) -> Mapping[str, jax.Array]:
    """Per-example ELBO terms with one reparameterized sample per example.

    Args:
      params: model parameters.
      x: [b, ...] inputs; y: [b] int labels or None.
      keys: [b] one PRNG key per example (derived from its global batch index by the caller).
      apply_fn, encode, decode: `model.apply` and the model's `encode` / `decode` methods.
      likelihood, log_scale: see `log_likelihood`.

    Returns:
      {'log_lik': [b], 'kl': [b], 'kl_per_dim': [b, z]} in nats, and the posterior
      'mean', 'logvar' [b, z] and the sample 'z' [b, z].
    """
    variables = {'params': params}
    mean, logvar = apply_fn(variables, x, y, method=encode)
    z = jax.vmap(D.reparameterize)(keys, mean, logvar)
    out = apply_fn(variables, z, y, method=decode)
    log_lik = jax.vmap(log_likelihood, in_axes=(0, 0, None, None))(x, out, likelihood, log_scale)
    kl_per_dim = jax.vmap(D.gaussian_kl_per_dim)(mean, logvar)
    return {'log_lik': log_lik, 'kl': jnp.sum(kl_per_dim, axis=-1), 'kl_per_dim': kl_per_dim,
            'mean': mean, 'logvar': logvar, 'z': z}


def vae_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
             beta: jax.Array, free_bits: float = 0.0, axis_name: Optional[str] = None,
             **model_fns) -> tuple[jax.Array, Mapping[str, jax.Array]]:
    """Batch-mean β-VAE loss (with optional free bits) from `elbo_terms`.

    Args:
      params, x, y, keys: see `elbo_terms`; `model_fns` are its keyword arguments.
      beta: [] current KL weight.
      free_bits: λ of `free_bits_kl`; 0 disables it.
      axis_name: the device axis (only used by free bits).

    Returns:
      (loss [], metrics): batch means of 'loss', 'neg_elbo', 'recon' (-log p(x|z)) and 'kl'.
    """
    t = elbo_terms(params, x, y, keys, **model_fns)
    kl_term = free_bits_kl(t['kl_per_dim'], free_bits, axis_name) if free_bits > 0 else t['kl']
    loss = jnp.mean(jax.vmap(negative_elbo, in_axes=(0, 0, None))(t['log_lik'], kl_term, beta))
    return loss, elbo_metrics(t, loss)


def elbo_metrics(terms: Mapping[str, jax.Array], loss: jax.Array, **extra) -> dict:
    """Batch means of 'neg_elbo', 'recon' (-log p(x|z)) and 'kl' from `elbo_terms`, the
    training 'loss', and any `extra` scalars."""
    return dict({'loss': loss, 'neg_elbo': jnp.mean(-terms['log_lik'] + terms['kl']),
                 'recon': jnp.mean(-terms['log_lik']), 'kl': jnp.mean(terms['kl'])}, **extra)


def iwae_sample_key(key: jax.Array, j: jax.Array) -> jax.Array:
    """Key of posterior sample j of one example, from that example's key.

    Sample 0 uses the example key itself, so it is exactly the z that `elbo_terms` draws;
    sample j >= 1 uses fold_in(key, j + 1), skipping 1, which `steps.prepare_inputs` uses to
    binarize. A sample's noise depends only on (example key, j): not on k, chunks or batches.
    """
    return jnp.where(j == 0, key, jax.random.fold_in(key, j + 1))


def iwae_log_weight(log_lik: jax.Array, z: jax.Array, mean: jax.Array,
                    logvar: jax.Array) -> jax.Array:
    """log p(x|z) + log p(z) - log q(z|x) for one example and one sample z: [z] -> [] nats."""
    return log_lik + D.standard_normal_log_prob(z) - D.gaussian_log_prob(z, mean, logvar)


def iwae_log_weights(params: Any, x: jax.Array, y: Optional[jax.Array], mean: jax.Array,
                     logvar: jax.Array, keys: jax.Array, j: jax.Array, *, apply_fn: Callable,
                     decode: Callable, likelihood: str, log_scale: float,
                     log_lik_fn: Callable = log_likelihood) -> jax.Array:
    """Importance log-weights of samples `j` of every example, decoded as one batch.

    Args:
      params, x, y: see `elbo_terms`; mean, logvar: [b, z] the encoder's output for x.
      keys: [b] example keys (see `iwae_sample_key`); j: [m] int sample numbers.
      log_lik_fn: (x [...], decoder output [..., k], likelihood, log_scale) -> [] nats;
        any function equal to `log_likelihood`.

    Returns:
      [b, m] nats.
    """
    b, m = x.shape[0], j.shape[0]
    sample_keys = jax.vmap(jax.vmap(iwae_sample_key, (None, 0)), (0, None))(keys, j)
    z = jax.vmap(jax.vmap(D.reparameterize, (0, None, None)))(sample_keys, mean, logvar)
    y = None if y is None else jnp.repeat(y, m)
    # One decoder call on all b * m latents: its matmuls are as large as the chunk allows.
    out = apply_fn({'params': params}, z.reshape(b * m, -1), y, method=decode)
    out = out.reshape(b, m, *out.shape[1:])
    lik = jax.vmap(jax.vmap(log_lik_fn, (None, 0, None, None)), (0, 0, None, None))
    log_lik = lik(x, out, likelihood, log_scale)
    return jax.vmap(jax.vmap(iwae_log_weight, (0, 0, None, None)))(log_lik, z, mean, logvar)


def iwae_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
              num_samples: int, apply_fn: Callable, encode: Callable, decode: Callable,
              likelihood: str, log_scale: float) -> tuple[jax.Array, Mapping[str, jax.Array]]:
    """Batch mean of minus the IWAE bound with k = `num_samples` (Burda et al. 2015, eq. 8).

    log p(x) >= logsumexp_i log w_i - log k, w_i = p(x, z_i) / q(z_i | x), z_1..k ~ q(z|x);
    log-sum-exp keeps it finite where the weights themselves underflow. With k = 1 this is
    the ELBO with a Monte-Carlo KL, log q(z|x) - log p(z), in place of the analytic one.

    Args:
      params, x, y, keys, apply_fn, encode, decode, likelihood, log_scale: see `elbo_terms`.
      num_samples: k >= 1.

    Returns:
      (loss [], metrics): batch means of 'loss' (-IWAE bound) and the analytic 'kl'.
    """
    mean, logvar = apply_fn({'params': params}, x, y, method=encode)
    log_w = iwae_log_weights(params, x, y, mean, logvar, keys, jnp.arange(num_samples),
                             apply_fn=apply_fn, decode=decode, likelihood=likelihood,
                             log_scale=log_scale)
    bound = jax.nn.logsumexp(log_w, axis=1) - jnp.log(num_samples)
    loss = -jnp.mean(bound)
    return loss, {'loss': loss, 'kl': jnp.mean(jax.vmap(D.gaussian_kl)(mean, logvar))}
