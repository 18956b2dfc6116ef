"""CIWAE(β) (Rainforth et al. 2018, §4): the convex combination of the ELBO and the IWAE bound
on the same K samples,

    β · (1/K) Σ_k log w_k + (1 - β) · log (1/K) Σ_k w_k,   w = p(x, z) / q(z | x).

β = 1 is the ELBO (a K-sample Monte-Carlo average), β = 0 is IWAE(K); the paper's MNIST runs use
β = 0.05 with K = 64 (`objective.elbo_weight`, `objective.num_samples`).
"""

import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.objectives.core import Objective
from vae_jax.objectives.iwae import iwae_log_weights, log_mean_exp


def ciwae_bound(log_w: jnp.ndarray, elbo_weight: jnp.ndarray) -> jnp.ndarray:
    """log_w [b, K], β [] -> [b]: β · mean_k log w + (1 - β) · log mean_k w."""
    return elbo_weight * jnp.mean(log_w, axis=-1) + (1 - elbo_weight) * log_mean_exp(log_w)


def loss(params, x, y, keys, ctx):
    s = ctx.settings
    log_w = iwae_log_weights(params, x, y, ctx.fns.features(params, x, y), keys,
                             jnp.arange(s['num_samples']), ctx.fns)
    value = -jnp.mean(ciwae_bound(log_w, s['elbo_weight']))
    return value, ({'loss': value, 'iwae': jnp.mean(log_mean_exp(log_w)),
                    'elbo': jnp.mean(log_w)}, None)


def check(config) -> None:
    o = config.objective
    if o.num_samples < 1:
        raise UserError(f'objective.num_samples must be >= 1, got {o.num_samples}')
    if not 0 <= o.elbo_weight <= 1:
        raise UserError(f'objective.elbo_weight (CIWAE β) must be in [0, 1], got {o.elbo_weight}')


OBJECTIVE = Objective(
    loss=loss,
    defaults={'num_samples': 1, 'elbo_weight': 0.05},  # K; β, the ELBO's weight
    traced=('elbo_weight',),
    check=check)
