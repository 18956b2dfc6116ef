"""The (β-weighted) ELBO, with KL warm-up and free bits.

loss = -log p(x|z) + β(step) KL(q(z|x) || p(z)): Kingma & Welling (2014) with β = 1;
Higgins et al. (2017) with β > 1; a linear warm-up of β (Bowman et al. 2016); free bits
(Kingma et al. 2016). With a prior that has no analytic KL, the KL is the single-sample
estimate log q(z|x) - log p(z).
"""

from typing import Optional

import jax
import jax.numpy as jnp
import optax

from vae_jax import models
from vae_jax.errors import UserError
from vae_jax.objectives.core import Objective, elbo_metrics, elbo_terms, negative_elbo


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


def vae_loss(params, x, y, keys, *, fns, beta: jax.Array, free_bits: float = 0.0,
             axis_name: Optional[str] = None):
    """Batch-mean β-VAE loss (with optional free bits) from `elbo_terms`.

    Args:
      params, x, y, keys, fns: see `core.elbo_terms`.
      beta: [] current KL weight.
      free_bits: λ of `free_bits_kl`; 0 disables it.
      axis_name: the device axis (only used by free bits).

    Returns:
      (loss [], metrics): batch means of 'loss', 'neg_elbo', 'recon' (-log p(x|z)) and 'kl'.
    """
    t = elbo_terms(params, x, y, keys, fns)
    kl_term = free_bits_kl(t['kl_per_dim'], free_bits, axis_name) if free_bits > 0 else t['kl']
    loss = jnp.mean(jax.vmap(negative_elbo, in_axes=(0, 0, None))(t['log_lik'], kl_term, beta))
    return loss, elbo_metrics(t, loss)


def loss(params, x, y, keys, ctx):
    s = ctx.settings
    beta = beta_schedule(s['beta'], s['kl_warmup_steps'])(ctx.step)
    value, metrics = vae_loss(params, x, y, keys, fns=ctx.fns, beta=beta,
                              free_bits=s['free_bits'], axis_name=ctx.axis_name)
    return value, (dict(metrics, beta=beta), None)


def check(config) -> None:
    o = config.objective
    if o.beta < 0:
        raise UserError(f'objective.beta must be >= 0, got {o.beta}')
    if o.free_bits < 0:
        raise UserError(f'objective.free_bits must be >= 0, got {o.free_bits}')
    if o.kl_warmup_steps < 0:
        raise UserError(f'objective.kl_warmup_steps must be >= 0, got {o.kl_warmup_steps}')
    if o.free_bits > 0 and not models.analytic_kl(config.model):
        raise UserError(f'objective.free_bits needs an analytic KL per dimension: a Gaussian '
                        f'q(z|x) and a prior with one; model.name={config.model.name!r}, '
                        f'model.posterior={config.model.posterior!r} and '
                        f'model.prior={config.model.prior!r} have none')


OBJECTIVE = Objective(
    loss=loss,
    # beta: KL weight; kl_warmup_steps: β rises linearly from 0 over this many steps;
    # free_bits: nats per latent dimension (0 = off; needs a prior with an analytic KL).
    defaults={'beta': 1.0, 'kl_warmup_steps': 0, 'free_bits': 0.0},
    traced=('beta',),
    check=check)
