"""A small top-down residual hierarchy in the style of VDVAE (Child 2021) / NVAE (Vahdat & Kautz
2020): `model.name='vdvae'`.

Bottom-up: the image, zero-padded to a square power-of-two size and rearranged by a
`stem`×`stem` space-to-depth (so the finest resolution of the hierarchy is S = side / stem; 1
keeps full resolution), goes through a 3×3 convolution and `blocks` residual blocks per
resolution S, S/2, ..., `min_res` (average pooling between), keeping the activation of each
resolution. The stem is a cost choice: on CPU a 3×3 convolution over 32×32×8 costs four times
one over 16×16×8 and dominated the step.

Top-down, shared between inference and generation: the state starts as a learned
[min_res, min_res, width] tensor; at each resolution up to `max_latent_res` (nearest-neighbour
upsampling between) come `groups` latent groups of `zdim` channels, each

    p-block(state)        -> prior mean, log-variance, and a residual added to the state;
    q-block(state, act_r) -> posterior mean, log-variance (inference only, from the state
                             before that residual and the bottom-up activation at r);
    z ~ q (inference) or p (generation);  state += 1×1 conv(z);  state = res-block(state),

then a residual block at resolution S and a 1×1 convolution to the likelihood's parameters of
each stem×stem pixel block (depth-to-space), cropped to the image. Every conditional is a diagonal Gaussian, so each group's KL(q || p) is
analytic given the groups above it; the ELBO sums them, the IWAE bound sums log q and log p.
The p-block's last layer starts at zero: an untrained prior is N(0, I).

Residual blocks are VDVAE's bottleneck: GELU, 1×1 to `middle`, GELU, 3×3, GELU, 3×3, GELU, 1×1
back. Inputs of 28×28 (padded to 32), 32×32×3 and 64×64 all work; the depth follows the size.
The training aids these models need are optimizer options (`optim.skip_threshold`,
`optim.ema_decay`) and the ELBO's `objective.kl_warmup_steps`.
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions as D
from vae_jax.errors import UserError
from vae_jax.latent_sample import Latents
from vae_jax.convolution import Conv, depth_to_space, space_to_depth


class ResBlock(nn.Module):
    """GELU-1×1-GELU-3×3-GELU-3×3-GELU-1×1 to `out` channels (+ the input when `residual`);
    with `zero_last` the last convolution starts at zero."""
    middle: int
    out: int
    residual: bool = True
    zero_last: bool = False

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        y = Conv(self.middle, (1, 1))(jax.nn.gelu(h))
        y = Conv(self.middle, (3, 3), padding='SAME')(jax.nn.gelu(y))
        y = Conv(self.middle, (3, 3), padding='SAME')(jax.nn.gelu(y))
        last_init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        y = Conv(self.out, (1, 1), kernel_init=last_init)(jax.nn.gelu(y))
        return h + y if self.residual else y


def _gaussian_log_prob(z, mean, logvar):
    """log N(z; mean, e^logvar) summed over all but the batch axis: [b, ...] -> [b]."""
    return jax.vmap(D.gaussian_log_prob)(z, mean, logvar)


class VDVAE(nn.Module):
    example_shape: Sequence[int]  # (h, w, c)
    num_params: int
    width: int = 32
    middle: int = 8
    zdim: int = 8
    blocks: int = 1
    groups_per_res: int = 2
    min_res: int = 4
    max_latent_res: int = 16
    stem: int = 1
    analytic_kl = True

    # -- shapes ----------------------------------------------------------------------------
    @property
    def padded(self) -> int:
        """The padded side: the smallest power of two >= the image's height and width."""
        side = max(self.example_shape[:2])
        return max(self.min_res * self.stem, 1 << (side - 1).bit_length())

    @property
    def size(self) -> int:
        """S: the finest resolution of the hierarchy, the padded side / stem."""
        return self.padded // self.stem

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Top-down order: min_res, 2·min_res, ..., S."""
        out, r = [], self.min_res
        while r <= self.size:
            out.append(r)
            r *= 2
        return tuple(out)

    @property
    def group_res(self) -> tuple[int, ...]:
        """The resolution of each latent group, top (coarsest) first."""
        return tuple(r for r in self.resolutions if r <= self.max_latent_res
                     for _ in range(self.groups_per_res))

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(r * r * self.zdim for r in self.group_res)

    @property
    def inference_params(self) -> tuple[str, ...]:
        return ('bottom_in', *(f'bottom_{i}' for i in range(len(self.resolutions) * self.blocks)),
                *(f'q_{g}' for g in range(len(self.group_res))))

    # -- modules ---------------------------------------------------------------------------
    def setup(self):
        n_groups = len(self.group_res)
        self.bottom_in = Conv(self.width, (3, 3), padding='SAME')
        self.bottom = [ResBlock(self.middle, self.width)
                       for _ in range(len(self.resolutions) * self.blocks)]
        self.top = self.param('top', nn.initializers.zeros, (self.min_res, self.min_res,
                                                              self.width))
        self.q = [ResBlock(self.middle, 2 * self.zdim, residual=False) for _ in range(n_groups)]
        self.p = [ResBlock(self.middle, 2 * self.zdim + self.width, residual=False,
                           zero_last=True) for _ in range(n_groups)]
        self.z_in = [Conv(self.width, (1, 1)) for _ in range(n_groups)]
        self.res = [ResBlock(self.middle, self.width) for _ in range(n_groups)]
        self.final = ResBlock(self.middle, self.width)
        self.out = Conv(self.stem**2 * self.example_shape[-1] * self.num_params, (1, 1))

    def features(self, x: jax.Array, y: Optional[jax.Array] = None):
        """x [b, h, w, c] -> the bottom-up activation of each resolution, S first."""
        h, w = self.example_shape[:2]
        x = jnp.pad(x - 0.5, ((0, 0), (0, self.padded - h), (0, self.padded - w), (0, 0)))
        a = self.bottom_in(space_to_depth(x, self.stem) if self.stem > 1 else x)
        acts = []
        for i in range(len(self.resolutions)):
            for j in range(self.blocks):
                a = self.bottom[i * self.blocks + j](a)
            acts.append(a)
            if i < len(self.resolutions) - 1:
                a = nn.avg_pool(a, (2, 2), (2, 2))
        return tuple(acts)

    def _top_down(self, b: int, choose):
        """The shared top-down pass; `choose(g, state, p_mean, p_logvar)` returns group g's
        latent [b, r, r, zdim] and anything to collect. Returns (output, collected)."""
        h = jnp.broadcast_to(self.top, (b, *self.top.shape))
        g, collected = 0, []
        for r in self.resolutions:
            if r > self.min_res:
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
            if r > self.max_latent_res:
                continue
            for _ in range(self.groups_per_res):
                p_mean, p_logvar, h_res = jnp.split(self.p[g](h), [self.zdim, 2 * self.zdim],
                                                    axis=-1)
                z, extra = choose(g, h, p_mean, p_logvar)
                collected.append(extra)
                h = self.res[g](h + h_res + self.z_in[g](z))
                g += 1
        h = self.final(h)
        height, width, channels = self.example_shape
        out = self.out(h)
        if self.stem > 1:
            out = depth_to_space(out, self.stem)
        out = out[:, :height, :width]
        return out.reshape(b, height, width, channels, self.num_params), collected

    def _act(self, acts, g):
        return acts[len(self.resolutions) - 1 - self.resolutions.index(self.group_res[g])]

    def infer(self, acts, y, keys: jax.Array, noise: bool = True):
        b = acts[0].shape[0]

        def choose(g, h, p_mean, p_logvar):
            q_mean, q_logvar = jnp.split(self.q[g](jnp.concatenate([h, self._act(acts, g)], -1)),
                                         2, axis=-1)
            key = keys if g == 0 else jax.vmap(jax.random.fold_in, (0, None))(keys, g)
            eps = jax.vmap(lambda k: jax.random.normal(k, q_mean.shape[1:]))(key)
            z = q_mean + jnp.exp(0.5 * q_logvar) * eps if noise else q_mean
            kl = D.gaussian_kl_between(q_mean, q_logvar, p_mean, p_logvar)
            return z, (z, q_mean, q_logvar, _gaussian_log_prob(z, q_mean, q_logvar),
                       _gaussian_log_prob(z, p_mean, p_logvar), kl)

        out, collected = self._top_down(b, choose)
        flat = lambda i: jnp.concatenate([c[i].reshape(b, -1) for c in collected], -1)
        stack = lambda i: jnp.stack([c[i] for c in collected], -1)
        kl_per_dim = flat(5)
        kl = jnp.stack([c[5].reshape(b, -1).sum(-1) for c in collected], -1)
        return out, Latents(flat(0), flat(1), flat(2), stack(3), stack(4), kl, kl_per_dim)

    def _split(self, z: jax.Array):
        parts, start = [], 0
        for r in self.group_res:
            n = r * r * self.zdim
            parts.append(z[:, start:start + n].reshape(z.shape[0], r, r, self.zdim))
            start += n
        return parts

    def decode(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        parts = self._split(z)
        return self._top_down(z.shape[0], lambda g, h, m, v: (parts[g], None))[0]

    def sample_prior(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        def choose(g, h, p_mean, p_logvar):
            eps = jax.random.normal(jax.random.fold_in(key, g), p_mean.shape)
            z = p_mean + temperature * jnp.exp(0.5 * p_logvar) * eps
            return z, z.reshape(n, -1)

        return jnp.concatenate(self._top_down(n, choose)[1], -1)

    def encode(self, x: jax.Array, y: Optional[jax.Array] = None):
        keys = jax.random.split(jax.random.key(0), x.shape[0])  # unused without noise
        lat = self.infer(self.features(x), y, keys, noise=False)[1]
        return lat.mean, lat.logvar

    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        keys = jax.random.split(jax.random.key(0), x.shape[0])
        return self.infer(self.features(x, y), y, keys)[0]


def build(model_config, example_shape: tuple, num_params: int, num_classes: int) -> VDVAE:
    """`VDVAE` with the `model.vdvae_*` sizes, for images [h, w, c]."""
    c = model_config
    if len(example_shape) != 3:
        raise UserError(f"model.name='vdvae' needs images [h, w, c]; this dataset has "
                        f"{example_shape}")
    if num_classes:
        raise UserError("model.name='vdvae' is unconditional; unset model.conditional")
    if c.prior != 'standard_normal' or c.posterior != 'gaussian':
        raise UserError("model.name='vdvae' has its own prior and posterior: leave model.prior "
                        "and model.posterior at 'standard_normal' and 'gaussian'")
    if c.vdvae_min_res > c.vdvae_max_latent_res:
        raise UserError('model.vdvae_min_res must be <= model.vdvae_max_latent_res')
    return VDVAE(tuple(example_shape), num_params, c.vdvae_width, c.vdvae_middle, c.vdvae_zdim,
                 c.vdvae_blocks, c.vdvae_groups, c.vdvae_min_res, c.vdvae_max_latent_res,
                 c.vdvae_stem)
