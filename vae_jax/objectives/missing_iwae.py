"""The IWAE bound of incomplete data (MIWAE of Mattei & Frellsen 2019, "MIWAE: Deep
Generative Modelling and Imputation of Incomplete Data Sets", eq. 4):

    log p(x_obs) >= log (1/k) Σ_j p(x_obs | z_j) p(z_j) / q(z_j | x̃),   z_1..k ~ q(z | x̃),

where a missing pixel is NaN in x, x̃ is x with its missing pixels set to 0 (what the encoder
reads), and p(x_obs | z) multiplies the likelihoods of the observed pixels only. On complete
data it is the IWAE bound; its k = 1 case is the ELBO of the observed pixels. Train on
incomplete images with `data.train_missing`; impute with `vae_jax.evaluate.imputation`.
"""

import functools

import jax
import jax.numpy as jnp

from vae_jax import likelihoods
from vae_jax.keys import iwae_sample_key
from vae_jax.objectives.core import Objective
from vae_jax.objectives.iwae import check, log_mean_exp


def missing_log_weights(params, x, y, keys, fns, num_samples: int) -> jax.Array:
    """[b, k] log p(x_obs | z_j) + log p(z_j) - log q(z_j | x̃) of every example.

    Args: x [b, ...] with NaN at missing pixels; y [b] or None; keys [b]; sample j of an
      example uses `iwae_sample_key(key, j)`, as the IWAE bound's.
    """
    observed = ~jnp.isnan(x)
    x0 = jnp.where(observed, x, 0.0)
    b, k = x.shape[0], num_samples
    h = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), fns.features(params, x0, y))
    sample_keys = jax.vmap(jax.vmap(iwae_sample_key, (None, 0)), (0, None))(keys, jnp.arange(k))
    out, lat = fns.infer(params, h, None if y is None else jnp.repeat(y, k),
                         sample_keys.reshape(b * k))
    log_lik = jax.vmap(functools.partial(likelihoods.observed_log_prob, fns.likelihood))(
        jnp.repeat(x0, k, axis=0), out, jnp.repeat(observed, k, axis=0))
    log_w = log_lik + jnp.sum(lat.log_p, axis=-1) - jnp.sum(lat.log_q, axis=-1)
    return log_w.reshape(b, k)


def loss(params, x, y, keys, ctx):
    log_w = missing_log_weights(params, x, y, keys, ctx.fns, ctx.settings['num_samples'])
    value = -jnp.mean(log_mean_exp(log_w))
    observed = jnp.mean(~jnp.isnan(x.reshape(x.shape[0], -1)), axis=-1)
    return value, ({'loss': value, 'observed_fraction': jnp.mean(observed)}, None)


OBJECTIVE = Objective(
    loss=loss,
    defaults={'num_samples': 1},  # k, as the IWAE's
    check=check,
    missing_data=True)
