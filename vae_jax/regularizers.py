"""The β-VAE family's regularizers: controlled capacity, β-TCVAE, FactorVAE and DIP-VAE.

Same reduction convention as `objectives`: per example a sum over pixels and latents (nats),
over a batch the mean. Terms that need batch statistics (the capacity's mean KL, the
minibatch-weighted total correlation, DIP-VAE's covariance, FactorVAE's permutation) use the
*global* batch through axis-name collectives, so a step on 1, 2 or 8 devices sharing the same
global batch computes the same loss and gradients. Gradients through `lax.pmean` and
`lax.all_gather` are exact under pmap: each device's gradient collects the cotangents of every
device's loss, and the step's final `pmean` of gradients divides by the device count.
"""

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from vae_jax import distributions as D
from vae_jax import objectives


def _pmean(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _gather(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
    """[b, ...] on each device -> [B, ...] global batch, in global-index order."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


# --- controlled capacity (Burgess et al. 2018) --------------------------------------------

def capacity_at(step: jax.Array, capacity_max: float, capacity_steps: int) -> jax.Array:
    """C(step): raised linearly from 0 to `capacity_max` nats over `capacity_steps`, then held."""
    fraction = jnp.minimum(step / max(capacity_steps, 1), 1.0)
    return capacity_max * fraction


def capacity_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
                  step: jax.Array, gamma: float, capacity_max: float, capacity_steps: int,
                  axis_name: Optional[str] = None, **model_fns):
    """-log p(x|z) + γ |KL - C(step)|, with KL the global-batch mean (Burgess et al. 2018, eq. 8).

    Returns:
      (loss [], metrics) with 'capacity' the current C in nats.
    """
    t = objectives.elbo_terms(params, x, y, keys, **model_fns)
    c = capacity_at(step, capacity_max, capacity_steps)
    batch_kl = _pmean(jnp.mean(t['kl']), axis_name)
    loss = jnp.mean(-t['log_lik']) + gamma * jnp.abs(batch_kl - c)
    return loss, objectives.elbo_metrics(t, loss, capacity=c)


# --- β-TCVAE (Chen et al. 2018) -------------------------------------------------------------

def log_density_matrix(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log q(z_i,d | x_j) for every pair: z [b, d], mean/logvar [m, d] -> [b, m, d] nats."""
    log_prob = jax.vmap(jax.vmap(D.gaussian_log_prob_per_dim, (None, 0, 0)), (0, None, None))
    return log_prob(z, mean, logvar)


def total_correlation(z: jax.Array, mean: jax.Array, logvar: jax.Array,
                      dataset_size: int = 0) -> jax.Array:
    """Minibatch estimate of TC = KL(q(z) || prod_d q(z_d)) (Chen et al. 2018, section 4.1).

    q(z) is estimated by the batch's mixture, log q(z_i) ≈ logsumexp_j log q(z_i | x_j) - log M,
    and likewise each marginal q(z_id). This is consistent: it tends to the TC of the
    aggregate posterior as M grows, and is 0 when all posteriors are equal. Chen et al.'s
    minibatch-weighted sampling (`dataset_size` = N > 0) subtracts log(N M) instead, which
    adds the constant (d - 1) log N: the same gradients, a value offset by that constant.

    Args:
      z: [b, d] samples whose TC terms are wanted (a slice of the batch or all of it).
      mean, logvar: [M, d] posteriors of the whole batch.
      dataset_size: 0 for the batch mixture, or N for Chen et al.'s weighting.

    Returns:
      [b] per-sample log q(z_i) - sum_d log q(z_id) in nats; its mean is the TC estimate.
    """
    m = mean.shape[0]
    log_qz_dims = log_density_matrix(z, mean, logvar)  # [b, M, d]
    log_qz = jax.nn.logsumexp(jnp.sum(log_qz_dims, axis=-1), axis=1)  # [b]
    log_prod_marginals = jnp.sum(jax.nn.logsumexp(log_qz_dims, axis=1), axis=-1)  # [b]
    normalizer = m * dataset_size if dataset_size > 0 else m
    return log_qz - log_prod_marginals + (z.shape[-1] - 1) * math.log(normalizer)


def beta_tcvae_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
                    beta: float, axis_name: Optional[str] = None, **model_fns):
    """-ELBO + (β - 1) TC, with TC estimated over the global batch (`total_correlation`).

    This is Chen et al.'s decomposition with α = γ = 1 (the KL keeps weight 1 and the total
    correlation gets β), the form disentanglement_lib trains.

    Returns:
      (loss [], metrics) with 'tc' the TC estimate in nats.
    """
    t = objectives.elbo_terms(params, x, y, keys, **model_fns)
    tc = jnp.mean(total_correlation(t['z'], _gather(t['mean'], axis_name),
                                    _gather(t['logvar'], axis_name)))
    loss = jnp.mean(-t['log_lik'] + t['kl']) + (beta - 1.0) * tc
    return loss, objectives.elbo_metrics(t, loss, tc=tc)


# --- DIP-VAE (Kumar et al. 2018) ------------------------------------------------------------

def dip_covariance(mean: jax.Array, logvar: jax.Array, dip_type: str,
                   axis_name: Optional[str] = None) -> jax.Array:
    """Covariance of the global batch's posterior means ('i') or of q(z) ('ii'): [b, d] -> [d, d].

    'ii' adds E[diag(exp(logvar))] to Cov[mean] (Kumar et al. 2018, eq. 6-7).
    """
    first = _pmean(jnp.mean(mean, axis=0), axis_name)
    second = _pmean(jnp.mean(mean[:, :, None] * mean[:, None, :], axis=0), axis_name)
    cov = second - first[:, None] * first[None, :]
    if dip_type == 'ii':
        cov = cov + jnp.diag(_pmean(jnp.mean(jnp.exp(logvar), axis=0), axis_name))
    return cov


def dip_regularizer(cov: jax.Array, lambda_od: float, lambda_d: float) -> jax.Array:
    """λ_od Σ_{i≠j} cov_ij² + λ_d Σ_i (cov_ii - 1)²: [d, d] -> []."""
    diag = jnp.diag(cov)
    off = cov - jnp.diag(diag)
    return lambda_od * jnp.sum(off ** 2) + lambda_d * jnp.sum((diag - 1.0) ** 2)


def dip_vae_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
                 dip_type: str, lambda_od: float, lambda_d: float,
                 axis_name: Optional[str] = None, **model_fns):
    """-ELBO + the DIP regularizer of the global batch's covariance.

    Returns:
      (loss [], metrics) with 'dip_reg' the regularizer.
    """
    t = objectives.elbo_terms(params, x, y, keys, **model_fns)
    reg = dip_regularizer(dip_covariance(t['mean'], t['logvar'], dip_type, axis_name),
                          lambda_od, lambda_d)
    loss = jnp.mean(-t['log_lik'] + t['kl']) + reg
    return loss, objectives.elbo_metrics(t, loss, dip_reg=reg)


# --- FactorVAE (Kim & Mnih 2018) ------------------------------------------------------------

def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
    """Each latent dimension shuffled across the batch independently: [B, d] -> [B, d].

    Samples of prod_d q(z_d) from samples of q(z) (Kim & Mnih 2018, algorithm 1).
    """
    keys = jax.random.split(key, z.shape[1])
    return jax.vmap(lambda k, col: jax.random.permutation(k, col), (0, 1), 1)(keys, z)


def local_permuted(key: jax.Array, z: jax.Array, axis_name: Optional[str]) -> jax.Array:
    """This device's rows of the permutation of the *global* batch: [b, d] -> [b, d]."""
    if axis_name is None:
        return permute_dims(key, z)
    permuted = permute_dims(key, _gather(z, axis_name))
    b = z.shape[0]
    return jax.lax.dynamic_slice_in_dim(permuted, jax.lax.axis_index(axis_name) * b, b)


def density_ratio_tc(logits: jax.Array) -> jax.Array:
    """TC estimate log D(z) / (1 - D(z)) from discriminator logits [b, 2] ('real' first) -> [b]."""
    return logits[:, 0] - logits[:, 1]


def discriminator_loss(logits_real: jax.Array, logits_permuted: jax.Array) -> jax.Array:
    """Cross-entropy of telling q(z) (class 0) from prod_d q(z_d) (class 1): [b, 2] x2 -> []."""
    real = optax.softmax_cross_entropy_with_integer_labels(
        logits_real, jnp.zeros(logits_real.shape[0], jnp.int32))
    permuted = optax.softmax_cross_entropy_with_integer_labels(
        logits_permuted, jnp.ones(logits_permuted.shape[0], jnp.int32))
    return 0.5 * (jnp.mean(real) + jnp.mean(permuted))


def factor_vae_loss(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
                    gamma: float, discriminate: Callable[[jax.Array], jax.Array], **model_fns):
    """-ELBO + γ TC, TC from the (fixed) discriminator's density ratio on z ~ q(z|x).

    Args:
      discriminate: z [b, d] -> logits [b, 2] with the current discriminator parameters.

    Returns:
      (loss [], (metrics, z [b, d])): z is passed on to the discriminator update.
    """
    t = objectives.elbo_terms(params, x, y, keys, **model_fns)
    tc = jnp.mean(density_ratio_tc(discriminate(t['z'])))
    loss = jnp.mean(-t['log_lik'] + t['kl']) + gamma * tc
    return loss, (objectives.elbo_metrics(t, loss, tc=tc), t['z'])
