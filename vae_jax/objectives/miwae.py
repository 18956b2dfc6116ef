"""MIWAE(M, K) (Rainforth et al. 2018, "Tighter variational bounds are not necessarily
better", §4): the average of M independent IWAE bounds of K samples each,

    (1/M) Σ_m log (1/K) Σ_k w_mk,   w = p(x, z) / q(z | x),  M·K samples per example.

M = 1 is IWAE(K); K = 1 is the ELBO with an M-sample Monte-Carlo KL. For a fixed budget M·K it
trades the tighter bound of IWAE against the better inference-network gradient of the ELBO.
"""

import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.objectives.core import Objective
from vae_jax.objectives.iwae import iwae_log_weights, log_mean_exp


def miwae_bound(log_w: jnp.ndarray, num_bounds: int) -> jnp.ndarray:
    """log_w [b, M·K] -> [b]: the mean over M groups of K consecutive samples of their IWAE
    bound."""
    b = log_w.shape[0]
    return jnp.mean(log_mean_exp(log_w.reshape(b, num_bounds, -1)), axis=-1)


def loss(params, x, y, keys, ctx):
    m, k = ctx.settings['num_bounds'], ctx.settings['num_samples']
    log_w = iwae_log_weights(params, x, y, ctx.fns.features(params, x, y), keys,
                             jnp.arange(m * k), ctx.fns)
    value = -jnp.mean(miwae_bound(log_w, m))
    return value, ({'loss': value, 'iwae': jnp.mean(log_mean_exp(log_w))}, None)


def check_counts(config) -> None:
    o = config.objective
    if o.num_samples < 1 or o.num_bounds < 1:
        raise UserError(f'objective.num_samples (K) and objective.num_bounds (M) must be >= 1, '
                        f'got K={o.num_samples}, M={o.num_bounds}')


OBJECTIVE = Objective(
    loss=loss,
    defaults={'num_samples': 1, 'num_bounds': 1},  # K samples per bound, M bounds
    check=check_counts)
