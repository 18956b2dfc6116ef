"""Controlled capacity (Burgess et al. 2018, eq. 8): -log p(x|z) + γ |KL - C(step)|.

KL is the global-batch mean; C rises linearly from 0 to `capacity_max` nats over
`capacity_steps` steps, then is held.
"""

import jax
import jax.numpy as jnp

from vae_jax.errors import UserError
from vae_jax.objectives.core import Objective, elbo_metrics, elbo_terms, pmean


def capacity_at(step: jax.Array, capacity_max: float, capacity_steps: int) -> jax.Array:
    """C(step): raised linearly from 0 to `capacity_max` nats over `capacity_steps`, then held."""
    fraction = jnp.minimum(step / max(capacity_steps, 1), 1.0)
    return capacity_max * fraction


def capacity_loss(params, x, y, keys, *, fns, step, gamma, capacity_max, capacity_steps,
                  axis_name=None):
    """Returns (loss [], metrics) with 'capacity' the current C in nats."""
    t = elbo_terms(params, x, y, keys, fns)
    c = capacity_at(step, capacity_max, capacity_steps)
    batch_kl = pmean(jnp.mean(t['kl']), axis_name)
    value = jnp.mean(-t['log_lik']) + gamma * jnp.abs(batch_kl - c)
    return value, elbo_metrics(t, value, capacity=c)


def loss(params, x, y, keys, ctx):
    s = ctx.settings
    value, metrics = capacity_loss(
        params, x, y, keys, fns=ctx.fns, step=ctx.step, gamma=s['gamma'],
        capacity_max=s['capacity_max'], capacity_steps=s['capacity_steps'],
        axis_name=ctx.axis_name)
    return value, (metrics, None)


def check(config) -> None:
    o = config.objective
    if o.gamma < 0 or o.capacity_max < 0 or o.capacity_steps < 0:
        raise UserError(f'objective.gamma, capacity_max and capacity_steps must be >= 0, got '
                        f'{o.gamma}, {o.capacity_max}, {o.capacity_steps}')


OBJECTIVE = Objective(
    loss=loss,
    defaults={'gamma': 1.0, 'capacity_max': 25.0, 'capacity_steps': 100_000},
    traced=('gamma', 'capacity_max'),
    check=check)
