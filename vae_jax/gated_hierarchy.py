"""Tomczak & Welling (2018)'s two-level VAE, their "HVAE (L=2)", with any `model.prior` on the
top level (the VampPrior in their Table 2): `model.name='gated_hvae'`.

Inference q(z2 | x) q(z1 | x, z2); generation p(z2) p(z1 | z2) p(x | z1, z2). Every network is
made of gated dense layers (`models.GatedDense`) of `model.hidden[0]` units; where a network
reads two inputs each goes through its own gated layer and the two are concatenated. Both
levels have `model.latents` dimensions; every log-variance is clipped to [-6, 2]. With
`model.prior='vampprior'` p(z2) is the mixture of q(z2 | u_k) at the learned pseudo-inputs:
the prior's encoder is q(z2 | ·) itself. Groups are x-side first: z = [z1, z2].
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions as D, priors
from vae_jax.errors import UserError
from vae_jax.hierarchies import _group_keys
from vae_jax.inits import dense_init
from vae_jax.latent_sample import Latents
from vae_jax.models import GatedDense, _posterior_head


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _gated_inputs(inputs, width: int, init: str) -> jax.Array:
    """Each input [b, ...] through its own gated layer, concatenated: [b, width · len(inputs)]."""
    return jnp.concatenate([GatedDense(width, init)(_flat(x)) for x in inputs], axis=-1)


class GatedGaussian(nn.Module):
    """inputs -> gated layer each, concatenated -> one more gated layer -> (mean, logvar)
    [b, latents] each, the log-variance clipped to [-6, 2]."""
    width: int
    latents: int
    weight_init: str = 'lecun'

    @nn.compact
    def __call__(self, *inputs: jax.Array):
        h = _gated_inputs(inputs, self.width, self.weight_init)
        h = GatedDense(self.width, self.weight_init)(h)
        return _posterior_head(h, self.latents, 0, (-6.0, 2.0), self.weight_init)


class GatedDecoder(nn.Module):
    """(z1, z2) -> gated layer each, concatenated -> gated layer -> Dense to `outputs`."""
    width: int
    outputs: int
    weight_init: str = 'lecun'

    @nn.compact
    def __call__(self, z1: jax.Array, z2: jax.Array) -> jax.Array:
        h = _gated_inputs((z1, z2), self.width, self.weight_init)
        h = GatedDense(self.width, self.weight_init)(h)
        return nn.Dense(self.outputs, **dense_init(self.weight_init, h.shape[-1]))(h)


class GatedHVAE(nn.Module):
    q2: nn.Module      # q(z2 | x): a GatedGaussian, shared with a VampPrior
    prior: nn.Module   # p(z2): a `priors` module
    latents: int
    width: int
    example_shape: Sequence[int]
    num_params: int
    weight_init: str = 'lecun'
    analytic_kl = False

    def setup(self):
        self.q1 = GatedGaussian(self.width, self.latents, self.weight_init)
        self.p1 = GatedGaussian(self.width, self.latents, self.weight_init)
        pixels = 1
        for d in self.example_shape:
            pixels *= d
        self.decoder = GatedDecoder(self.width, pixels * self.num_params, self.weight_init)

    @property
    def groups(self) -> tuple[int, ...]:
        return (self.latents, self.latents)

    @property
    def inference_params(self) -> tuple[str, ...]:
        return ('q1', 'q2')

    def features(self, x: jax.Array, y: Optional[jax.Array] = None):
        """x [b, ...] -> (x [b, D], q(z2|x)'s mean and logvar [b, z])."""
        return (_flat(x), *self.q2(x))

    def infer(self, h, y, keys: jax.Array):
        x, mean2, logvar2 = h
        z2 = jax.vmap(D.reparameterize)(_group_keys(keys, 1), mean2, logvar2)
        mean1, logvar1 = self.q1(x, z2)
        z1 = jax.vmap(D.reparameterize)(_group_keys(keys, 0), mean1, logvar1)
        prior_mean1, prior_logvar1 = self.p1(z2)
        log_q = jnp.stack([jax.vmap(D.gaussian_log_prob)(z1, mean1, logvar1),
                           jax.vmap(D.gaussian_log_prob)(z2, mean2, logvar2)], -1)
        log_p = jnp.stack([jax.vmap(D.gaussian_log_prob)(z1, prior_mean1, prior_logvar1),
                           self.prior.log_prob(z2)], -1)
        latents = Latents(jnp.concatenate([z1, z2], -1), jnp.concatenate([mean1, mean2], -1),
                          jnp.concatenate([logvar1, logvar2], -1), log_q, log_p, log_q - log_p)
        return self.decode(latents.z, y), latents

    def decode(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        out = self.decoder(z[:, :self.latents], z[:, self.latents:])
        return out.reshape(z.shape[0], *self.example_shape, self.num_params)

    def sample_prior(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        top, bottom = jax.random.split(key)
        z2 = self.prior.sample(top, n, temperature)
        mean1, logvar1 = self.p1(z2)
        z1 = mean1 + temperature * jnp.exp(0.5 * logvar1) * jax.random.normal(bottom, mean1.shape)
        return jnp.concatenate([z1, z2], -1)

    def encode(self, x: jax.Array, y: Optional[jax.Array] = None):
        """Both levels' posteriors with zero noise: z2's mean, then q(z1 | x, that mean)."""
        mean2, logvar2 = self.q2(x)
        mean1, logvar1 = self.q1(_flat(x), mean2)
        return jnp.concatenate([mean1, mean2], -1), jnp.concatenate([logvar1, logvar2], -1)

    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        keys = jax.random.split(jax.random.key(0), x.shape[0])
        self.prior.log_prob(jnp.zeros((1, self.latents)))  # creates a learned prior's parameters
        return self.infer(self.features(x, y), y, keys)[0]


def build(model_config, example_shape: tuple, num_params: int, num_classes: int) -> GatedHVAE:
    """`GatedHVAE` with `model.latents` per level, width `model.hidden[0]`, `model.prior` on z2."""
    c = model_config
    if num_classes:
        raise UserError("model.name='gated_hvae' is unconditional; unset model.conditional")
    if c.posterior != 'gaussian':
        raise UserError("model.name='gated_hvae' has Gaussian posteriors: leave model.posterior "
                        "at 'gaussian'")
    q2 = GatedGaussian(c.hidden[0], c.latents, c.init)
    prior = priors.make(c, example_shape=example_shape, encoder=q2)
    return GatedHVAE(q2, prior, c.latents, c.hidden[0], tuple(example_shape), num_params, c.init)
