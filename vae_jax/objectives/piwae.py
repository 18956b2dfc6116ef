"""PIWAE(M, K) (Rainforth et al. 2018, §4): the generative network p(x, z) follows the gradient
of IWAE(M·K), the inference network q(z|x) that of MIWAE(M, K), on the same M·K samples.

The split is by parameter: `ModelFns.inference_params` names q's top-level parameter
collections. The loss is evaluated twice, once with q's parameters held fixed
(`stop_gradient`) and once with p's, and combined so that its value is -IWAE(M·K) while each
network gets only its own target's gradient. M = 1 gives IWAE(K)'s gradients everywhere.
"""

import jax
import jax.numpy as jnp

from vae_jax.objectives.core import Objective
from vae_jax.objectives.iwae import iwae_log_weights, log_mean_exp
from vae_jax.objectives.miwae import check_counts, miwae_bound


def held(params: dict, trained: tuple[str, ...], inverse: bool = False) -> dict:
    """params with every top-level collection not in `trained` (with `inverse`, every one in
    it) under stop_gradient."""
    return {name: value if (name in trained) != inverse else jax.lax.stop_gradient(value)
            for name, value in params.items()}


def loss(params, x, y, keys, ctx):
    fns, m, k = ctx.fns, ctx.settings['num_bounds'], ctx.settings['num_samples']
    inference = fns.inference_params
    j = jnp.arange(m * k)

    def log_weights(p):
        return iwae_log_weights(p, x, y, fns.features(p, x, y), keys, j, fns)

    iwae = jnp.mean(log_mean_exp(log_weights(held(params, inference, inverse=True))))
    miwae = jnp.mean(miwae_bound(log_weights(held(params, inference)), m))
    value = -(iwae + miwae - jax.lax.stop_gradient(miwae))
    return value, ({'loss': value, 'iwae': iwae, 'miwae': miwae}, None)


OBJECTIVE = Objective(
    loss=loss,
    defaults={'num_samples': 1, 'num_bounds': 1},  # K samples per bound, M bounds
    check=check_counts)
