"""Cyclical KL annealing (Fu et al. 2019): -log p(x|z) + β(step) KL, where β rises linearly from
0 to `beta` over the first half of every cycle of `cycle_steps` steps and is then held."""

import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.objectives.core import Objective, elbo_metrics, elbo_terms


def cyclical_beta(step, beta, cycle_steps):
    """β at `step`: [] -> [], 0 -> β over the first half of each cycle, then β."""
    phase = (step % cycle_steps) / cycle_steps
    return beta * jnp.minimum(2.0 * phase, 1.0)


def loss(params, x, y, keys, ctx):
    """Batch mean of -log p(x|z) + β(step) KL; metrics add the current 'beta'."""
    t = elbo_terms(params, x, y, keys, ctx.fns)
    beta = cyclical_beta(ctx.step, ctx.settings['beta'], ctx.settings['cycle_steps'])
    value = jnp.mean(-t['log_lik'] + beta * t['kl'])
    return value, (elbo_metrics(t, value, beta=beta), None)


def check(config):
    if config.objective.beta < 0:
        raise UserError(f'objective.beta must be >= 0, got {config.objective.beta}')
    if config.objective.cycle_steps < 1:
        raise UserError(f'objective.cycle_steps must be >= 1, got {config.objective.cycle_steps}')


OBJECTIVE = Objective(loss=loss, defaults={'beta': 1.0, 'cycle_steps': 10_000},
                      traced=('beta',), check=check)
