"""FactorVAE (Kim & Mnih 2018): -ELBO + γ TC, with the total correlation estimated by a
discriminator trained beside the VAE to tell q(z) from the product of its marginals.

The discriminator (`Discriminator`, `config.discriminator`) is this objective's auxiliary
model (`core.Aux`): its state lives in `TrainState.aux`, and the train step takes one Adam step
on it with `grads` after every VAE step, on the VAE step's samples z (taken before the VAE update, as in
algorithm 1 of the paper) and their permutation across the *global* batch.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from vae_jax.errors import UserError
from vae_jax.inits import params_and_opt_state
from vae_jax.objectives.core import (Aux, Objective, elbo_metrics, elbo_terms, gather,
                                     require_gaussian_posterior)


class Discriminator(nn.Module):
    """An MLP with leaky-ReLU(0.2) on z [b, d] -> logits [b, 2].

    Logit 0 is 'z comes from q(z)', logit 1 'from prod_d q(z_d)' (Kim & Mnih 2018: six layers
    of 1000 units).
    """
    hidden: tuple

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = z
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width)(h), negative_slope=0.2)
        return nn.Dense(2)(h)


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
    """Each latent dimension shuffled across the batch independently: [B, d] -> [B, d].

    Samples of prod_d q(z_d) from samples of q(z) (Kim & Mnih 2018, algorithm 1).
    """
    keys = jax.random.split(key, z.shape[1])
    return jax.vmap(lambda k, col: jax.random.permutation(k, col), (0, 1), 1)(keys, z)


def local_permuted(key: jax.Array, z: jax.Array, axis_name: Optional[str]) -> jax.Array:
    """This device's rows of the permutation of the *global* batch: [b, d] -> [b, d]."""
    if axis_name is None:
        return permute_dims(key, z)
    permuted = permute_dims(key, gather(z, axis_name))
    b = z.shape[0]
    return jax.lax.dynamic_slice_in_dim(permuted, jax.lax.axis_index(axis_name) * b, b)


def density_ratio_tc(logits: jax.Array) -> jax.Array:
    """TC estimate log D(z) / (1 - D(z)) from discriminator logits [b, 2] ('real' first) -> [b]."""
    return logits[:, 0] - logits[:, 1]


def discriminator_loss(logits_real: jax.Array, logits_permuted: jax.Array) -> jax.Array:
    """Cross-entropy of telling q(z) (class 0) from prod_d q(z_d) (class 1): [b, 2] x2 -> []."""
    real = optax.softmax_cross_entropy_with_integer_labels(
        logits_real, jnp.zeros(logits_real.shape[0], jnp.int32))
    permuted = optax.softmax_cross_entropy_with_integer_labels(
        logits_permuted, jnp.ones(logits_permuted.shape[0], jnp.int32))
    return 0.5 * (jnp.mean(real) + jnp.mean(permuted))


def loss(params, x, y, keys, ctx):
    """-ELBO + γ TC, TC from the (fixed) discriminator's density ratio on z ~ q(z|x).

    Returns (loss, (metrics with 'tc', z [b, d])): z is passed on to `grads`.
    """
    t = elbo_terms(params, x, y, keys, ctx.fns)
    logits = ctx.aux.apply_fn({'params': ctx.aux.params}, t['z'])
    tc = jnp.mean(density_ratio_tc(logits))
    value = jnp.mean(-t['log_lik'] + t['kl']) + ctx.settings['gamma'] * tc
    return value, (elbo_metrics(t, value, tc=tc), t['z'])


def init(key: jax.Array, config) -> train_state.TrainState:
    """The discriminator `config.discriminator` describes, with its own Adam (initialised as one
    program, `inits.params_and_opt_state`)."""
    c = config.discriminator
    module = Discriminator(tuple(c.hidden))
    tx = optax.adam(c.learning_rate, b1=c.b1, b2=c.b2)
    params, opt_state = params_and_opt_state(
        module, tx, key, jnp.zeros((1, config.model.latents), jnp.float32))
    return train_state.TrainState(step=0, apply_fn=module.apply, params=params, tx=tx,
                                  opt_state=opt_state)


def grads(disc: train_state.TrainState, z: jax.Array, perm_key: jax.Array,
          axis_name: Optional[str]):
    """The discriminator's loss gradient on z [b, d] ~ q(z|x) and its global permutation
    (the train step applies it with the discriminator's Adam).

    Returns:
      (gradients of disc.params over the global batch, {'disc_loss', 'disc_accuracy'} over
      the global batch).
    """
    z = jax.lax.stop_gradient(z)
    permuted = local_permuted(perm_key, z, axis_name)

    def disc_loss(params):
        real = disc.apply_fn({'params': params}, z)
        fake = disc.apply_fn({'params': params}, permuted)
        accuracy = 0.5 * (jnp.mean(jnp.argmax(real, -1) == 0) + jnp.mean(jnp.argmax(fake, -1) == 1))
        return discriminator_loss(real, fake), accuracy

    (value, accuracy), grads = jax.value_and_grad(disc_loss, has_aux=True)(disc.params)
    metrics = {'disc_loss': value, 'disc_accuracy': accuracy}
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    return grads, metrics


def check(config) -> None:
    o = config.objective
    require_gaussian_posterior(config)
    if o.gamma < 0:
        raise UserError(f'objective.gamma must be >= 0, got {o.gamma}')


OBJECTIVE = Objective(loss=loss, defaults={'gamma': 1.0}, traced=('gamma',), check=check,
                      aux=Aux(init=init, grads=grads))
