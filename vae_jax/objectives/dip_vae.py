"""DIP-VAE (Kumar et al. 2018): -ELBO + a penalty pushing a covariance to the identity.

The covariance of the global batch's posterior means ('i') or of q(z) ('ii').
"""

from typing import Optional

import jax
import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.objectives.core import (Objective, elbo_terms, neg_elbo_plus, pmean,
                                     require_gaussian_posterior)


def dip_covariance(mean: jax.Array, logvar: jax.Array, dip_type: str,
                   axis_name: Optional[str] = None) -> jax.Array:
    """Covariance of the global batch's posterior means ('i') or of q(z) ('ii'): [b, d] -> [d, d].

    'ii' adds E[diag(exp(logvar))] to Cov[mean] (Kumar et al. 2018, eq. 6-7).
    """
    first = pmean(jnp.mean(mean, axis=0), axis_name)
    second = pmean(jnp.mean(mean[:, :, None] * mean[:, None, :], axis=0), axis_name)
    cov = second - first[:, None] * first[None, :]
    if dip_type == 'ii':
        cov = cov + jnp.diag(pmean(jnp.mean(jnp.exp(logvar), axis=0), axis_name))
    return cov


def dip_regularizer(cov: jax.Array, lambda_od: float, lambda_d: float) -> jax.Array:
    """λ_od Σ_{i≠j} cov_ij² + λ_d Σ_i (cov_ii - 1)²: [d, d] -> []."""
    diag = jnp.diag(cov)
    off = cov - jnp.diag(diag)
    return lambda_od * jnp.sum(off ** 2) + lambda_d * jnp.sum((diag - 1.0) ** 2)


def loss(params, x, y, keys, ctx):
    """Metrics add 'dip_reg', the penalty."""
    s = ctx.settings
    t = elbo_terms(params, x, y, keys, ctx.fns)
    reg = dip_regularizer(dip_covariance(t['mean'], t['logvar'], s['dip_type'], ctx.axis_name),
                          s['lambda_od'], s['lambda_d'])
    return neg_elbo_plus(t, reg, dip_reg=reg)


def check(config) -> None:
    o = config.objective
    require_gaussian_posterior(config)
    if o.dip_type not in ('i', 'ii'):
        raise UserError(f"unknown objective.dip_type {o.dip_type!r}; choose one of 'i', 'ii'")
    if o.lambda_od < 0 or o.lambda_d < 0:
        raise UserError('objective.lambda_od and lambda_d must be >= 0')


OBJECTIVE = Objective(
    loss=loss,
    # lambda_od: off-diagonal weight; lambda_d: diagonal weight.
    defaults={'dip_type': 'i', 'lambda_od': 10.0, 'lambda_d': 100.0},
    traced=('lambda_od', 'lambda_d'),
    check=check)
