"""β-TCVAE (Chen et al. 2018): -ELBO + (β - 1) TC, the total correlation of the aggregate
posterior estimated over the global batch.

This is Chen et al.'s decomposition with α = γ = 1 (the KL keeps weight 1 and the total
correlation gets β), the form disentanglement_lib trains.
"""

import math

import jax
import jax.numpy as jnp

from vae_jax import distributions as D
from vae_jax.errors import UserError
from vae_jax.objectives.core import (Objective, elbo_terms, gather, neg_elbo_plus,
                                     require_gaussian_posterior)


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


def loss(params, x, y, keys, ctx):
    """Metrics add 'tc', the TC estimate in nats."""
    t = elbo_terms(params, x, y, keys, ctx.fns)
    tc = jnp.mean(total_correlation(t['z'], gather(t['mean'], ctx.axis_name),
                                    gather(t['logvar'], ctx.axis_name)))
    return neg_elbo_plus(t, (ctx.settings['beta'] - 1.0) * tc, tc=tc)


def check(config) -> None:
    o = config.objective
    require_gaussian_posterior(config)
    if o.beta < 0:
        raise UserError(f'objective.beta must be >= 0, got {o.beta}')


OBJECTIVE = Objective(loss=loss, defaults={'beta': 1.0}, traced=('beta',), check=check)
