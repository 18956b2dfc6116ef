"""Models with several groups of latents: `models.MODELS` entries that `model_fns.HierarchyFns`
drives through the methods below.

A hierarchy is a linen module with
  features(x [b, ...], y) -> h: the deterministic bottom-up part, once per example;
  infer(h, y, keys [b]) -> (out [b, ..., k], `model_fns.Latents`): one posterior sample of every
    group (group g drawn with `jax.random.fold_in(key, g)`, group 0 with the key itself),
    its log q and log p per group, and the decoder's output;
  decode(z [b, Z], y) -> out; sample_prior(key, n, temperature) -> z [n, Z];
  encode(x, y) -> (location [b, Z], logvar [b, Z]): every group's posterior with zero noise;
and the attributes `groups` (sizes), `analytic_kl` and `inference_params` (the top-level
parameter collections of q).

`HVAE` is the stochastic-layer MLP of Burda et al. (2015, appendix C; Table 1's "2 stochastic
layers"): inference bottom-up, q(z_1|x) q(z_2|z_1) ..., generation top-down,
p(z_L) p(z_{L-1}|z_L) ... p(x|z_1), every conditional a diagonal Gaussian whose mean and
log-variance are linear in the last of `depth` tanh layers.
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions as D
from vae_jax.errors import UserError
from vae_jax.inits import dense_init
from vae_jax.latent_sample import Latents


def _group_keys(keys: jax.Array, g: int) -> jax.Array:
    """[b] keys of latent group g: the example keys themselves for g = 0, else fold_in(·, g)."""
    return keys if g == 0 else jax.vmap(jax.random.fold_in, (0, None))(keys, g)


class TanhMLP(nn.Module):
    """`depth` Dense+tanh layers of `width`, then a Dense to `outputs` (reshaped to `shape`)."""
    width: int
    depth: int
    outputs: int
    weight_init: str = 'lecun'  # a name in inits.NAMES

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for _ in range(self.depth):
            kw = dense_init(self.weight_init, h.shape[-1])
            h = jnp.tanh(nn.Dense(self.width, **kw)(h))
        return nn.Dense(self.outputs, **dense_init(self.weight_init, h.shape[-1]))(h)


def _gaussian(net: nn.Module, h: jax.Array):
    return tuple(jnp.split(net(h), 2, axis=-1))  # (mean, logvar)


class HVAE(nn.Module):
    """Stochastic layers z_1 (next to x) ... z_L with sizes `latents`; `hidden[g]` is the width
    of the tanh layers between z_g and the layer below it (x for g = 0), in both directions."""
    latents: Sequence[int]
    hidden: Sequence[int]
    depth: int
    example_shape: Sequence[int]
    num_params: int
    weight_init: str = 'lecun'
    analytic_kl = False

    def setup(self):
        L = len(self.latents)
        init = self.weight_init
        self.q = [TanhMLP(self.hidden[g], self.depth, 2 * self.latents[g], init)
                  for g in range(L)]
        self.p = [TanhMLP(self.hidden[g + 1], self.depth, 2 * self.latents[g], init)
                  for g in range(L - 1)]
        pixels = 1
        for d in self.example_shape:
            pixels *= d
        self.decoder = TanhMLP(self.hidden[0], self.depth, pixels * self.num_params,
                               self.weight_init)

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(self.latents)

    @property
    def inference_params(self) -> tuple[str, ...]:
        return tuple(f'q_{g}' for g in range(len(self.latents)))

    def features(self, x: jax.Array, y: Optional[jax.Array] = None):
        return _gaussian(self.q[0], x.reshape(x.shape[0], -1))

    def _prior_terms(self, zs):
        """log p(z_g | z_{g+1}) [b] of each group (N(0, I) for the top one)."""
        L = len(zs)
        log_p = [None] * L
        log_p[L - 1] = jax.vmap(D.standard_normal_log_prob)(zs[L - 1])
        for g in range(L - 1):
            mean, logvar = _gaussian(self.p[g], zs[g + 1])
            log_p[g] = jax.vmap(D.gaussian_log_prob)(zs[g], mean, logvar)
        return log_p

    def infer(self, h, y, keys: jax.Array):
        mean, logvar = h
        zs, means, logvars, log_q = [], [], [], []
        for g in range(len(self.latents)):
            if g:
                mean, logvar = _gaussian(self.q[g], zs[-1])
            z = jax.vmap(D.reparameterize)(_group_keys(keys, g), mean, logvar)
            zs.append(z), means.append(mean), logvars.append(logvar)
            log_q.append(jax.vmap(D.gaussian_log_prob)(z, mean, logvar))
        log_q, log_p = jnp.stack(log_q, -1), jnp.stack(self._prior_terms(zs), -1)
        latents = Latents(jnp.concatenate(zs, -1), jnp.concatenate(means, -1),
                          jnp.concatenate(logvars, -1), log_q, log_p, log_q - log_p)
        return self.decode(latents.z, y), latents

    def decode(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        out = self.decoder(z[:, :self.latents[0]])
        return out.reshape(z.shape[0], *self.example_shape, self.num_params)

    def sample_prior(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        L = len(self.latents)
        keys = jax.random.split(key, L)
        zs = [None] * L
        zs[L - 1] = temperature * jax.random.normal(keys[L - 1], (n, self.latents[L - 1]))
        for g in reversed(range(L - 1)):
            mean, logvar = _gaussian(self.p[g], zs[g + 1])
            noise = jax.random.normal(keys[g], mean.shape)
            zs[g] = mean + temperature * jnp.exp(0.5 * logvar) * noise
        return jnp.concatenate(zs, -1)

    def encode(self, x: jax.Array, y: Optional[jax.Array] = None):
        mean, logvar = self.features(x, y)
        means, logvars = [mean], [logvar]
        for g in range(1, len(self.latents)):
            mean, logvar = _gaussian(self.q[g], mean)
            means.append(mean), logvars.append(logvar)
        return jnp.concatenate(means, -1), jnp.concatenate(logvars, -1)

    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        keys = jax.random.split(jax.random.key(0), x.shape[0])
        return self.infer(self.features(x, y), y, keys)[0]


def two_layer(model_config, example_shape: tuple, num_params: int, num_classes: int) -> HVAE:
    """`HVAE` with `model.group_latents`, `group_hidden` and `group_depth` (Burda et al.'s two
    stochastic layers: (100, 50), (200, 100), 2)."""
    c = model_config
    if num_classes:
        raise UserError("model.name='hvae' is unconditional; unset model.conditional")
    if c.prior != 'standard_normal' or c.posterior != 'gaussian':
        raise UserError("model.name='hvae' has its own prior and posterior: leave model.prior "
                        "and model.posterior at 'standard_normal' and 'gaussian'")
    return HVAE(tuple(c.group_latents), tuple(c.group_hidden), c.group_depth,
                tuple(example_shape), num_params, c.init)
