"""Cyclical KL annealing: the β schedule and the loss it weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config, configs, model_fns, steps
from vae_jax.errors import UserError
from vae_jax.keys import example_keys
from vae_jax.objectives import cyclical, elbo_terms
from vae_jax.objectives.core import Context


def test_beta_rises_over_half_a_cycle_then_holds():
    betas = [float(cyclical.cyclical_beta(s, 4.0, 10)) for s in (0, 2, 5, 9, 10, 12)]
    np.testing.assert_allclose(betas, [0.0, 1.6, 4.0, 4.0, 0.0, 1.6], rtol=1e-6)


def test_loss_is_recon_plus_current_beta_times_kl():
    c = base_config()
    c.objective.name, c.objective.beta, c.objective.cycle_steps = 'cyclical', 4.0, 10
    c.model.hidden, c.model.latents, c.model.likelihood = (8,), 2, 'gaussian'
    configs.validate(c)
    fns = model_fns.build(c.model, (5,), 0)
    x = jnp.linspace(-1, 1, 20).reshape(4, 5)
    params = fns.module.init(jax.random.key(0), x)['params']
    keys = example_keys(jax.random.key(1), jnp.arange(4))
    ctx = Context(fns=fns, settings=steps.settings(c.objective, steps.hyperparams(c)),
                  step=jnp.asarray(2))
    loss, (metrics, _) = cyclical.loss(params, x, None, keys, ctx)
    t = elbo_terms(params, x, None, keys, fns)
    np.testing.assert_allclose(loss, jnp.mean(-t['log_lik'] + 1.6 * t['kl']), rtol=1e-6)
    np.testing.assert_allclose(metrics['beta'], 1.6, rtol=1e-6)


def test_cycle_steps_must_be_positive():
    c = base_config()
    c.objective.name, c.objective.cycle_steps = 'cyclical', 0
    with pytest.raises(UserError, match='cycle_steps must be >= 1'):
        configs.validate(c)
