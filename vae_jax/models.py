"""Flax linen encoders and decoders, and the VAE that wires them together.

Encoders map a batch of examples to the posterior parameters `(mean, logvar)`, each [b, z],
and, when built with `context > 0`, a third output [b, context] that a posterior flow reads.
Decoders map latents [b, z] to the likelihood's parameters [b, *example_shape, k], where k is
the likelihood's `num_params` (`likelihoods`). `NETWORKS` is the registry of encoder/decoder
pairs that `config.model.encoder` names.

Conditioning (CVAE, Sohn et al. 2015): with `num_classes > 0` the label's one-hot vector is
concatenated to the encoder's flattened features and to the decoder's latent input, so
`decode(z, y)` generates an example of class y.
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import flows, likelihoods, priors, registry
from vae_jax.activations import relu, relu_minus_zero
from vae_jax.convolution import Conv
from vae_jax.errors import UserError
from vae_jax.inits import dense_init
from vae_jax.upsample import UPSAMPLERS


def _one_hot(y: Optional[jax.Array], num_classes: int) -> Optional[jax.Array]:
    if num_classes <= 0:
        return None
    if y is None:
        raise ValueError('this model is conditional: pass the labels y')
    return jax.nn.one_hot(y, num_classes)


def _concat(h: jax.Array, c: Optional[jax.Array]) -> jax.Array:
    return h if c is None else jnp.concatenate([h, c], axis=-1)


def _posterior_head(h: jax.Array, latents: int, context: int, logvar_clip=None,
                    weight_init: str = 'lecun'):
    """Last hidden layer h [b, d] -> (mean, logvar) [b, z] each, plus a flow's context
    [b, context] (one more Dense of h) when context > 0; inside the calling module. With
    `logvar_clip` = (low, high) the mean and log-variance come from two Dense layers and the
    log-variance is clipped to that range (a hard tanh), as in the VampPrior paper's code."""
    kw = dense_init(weight_init, h.shape[-1])
    if logvar_clip is None:
        mean, logvar = jnp.split(nn.Dense(2 * latents, **kw)(h), 2, axis=-1)
    else:
        mean = nn.Dense(latents, **kw)(h)
        logvar = jnp.clip(nn.Dense(latents, **kw)(h), *logvar_clip)
    if context <= 0:
        return mean, logvar
    return mean, logvar, nn.Dense(context, **kw)(h)


class GatedDense(nn.Module):
    """Dense(h) ⊙ sigmoid(Dense'(h)): the gated layer of Tomczak & Welling (2018)."""
    features: int
    weight_init: str = 'lecun'

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kw = dense_init(self.weight_init, h.shape[-1])
        return nn.Dense(self.features, **kw)(h) * jax.nn.sigmoid(
            nn.Dense(self.features, **kw)(h))


# config.model.activation / decoder_activation -> the nonlinearity of the MLPs' hidden layers
# ('relu': `activations.relu`, as the conv nets use; jax.nn.relu's values and derivatives).
ACTIVATIONS = {'relu': relu, 'tanh': jnp.tanh, 'softplus': nn.softplus, 'elu': nn.elu,
               'gelu': nn.gelu}


def _hidden(h: jax.Array, width: int, gated: bool, init: str,
            activation: str = 'relu') -> jax.Array:
    """One hidden layer inside the calling module: Dense + activation, or a `GatedDense`."""
    if gated:
        return GatedDense(width, init)(h)
    return ACTIVATIONS[activation](nn.Dense(width, **dense_init(init, h.shape[-1]))(h))


class MLPEncoder(nn.Module):
    """Flatten -> Dense+ReLU per hidden width -> Dense(2z) split into mean and logvar.

    `gated`: gated layers instead, and the log-variance clipped to [-6, 2]: the VampPrior
    paper's MNIST encoder with hidden (300, 300) (Tomczak & Welling 2018).
    `weight_init`: a name in `inits.NAMES`."""
    hidden: Sequence[int]
    latents: int
    num_classes: int = 0
    context: int = 0
    gated: bool = False
    weight_init: str = 'lecun'
    activation: str = 'relu'

    @nn.compact
    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None):
        h = _concat(x.reshape(x.shape[0], -1), _one_hot(y, self.num_classes))
        for width in self.hidden:
            h = _hidden(h, width, self.gated, self.weight_init, self.activation)
        return _posterior_head(h, self.latents, self.context,
                               (-6.0, 2.0) if self.gated else None, self.weight_init)


class MLPDecoder(nn.Module):
    """Dense+ReLU (or, `gated`, gated) per hidden width -> Dense to every output parameter,
    reshaped."""
    hidden: Sequence[int]
    output_shape: Sequence[int]
    num_params: int = 1
    num_classes: int = 0
    gated: bool = False
    weight_init: str = 'lecun'
    activation: str = 'relu'

    @nn.compact
    def __call__(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        h = _concat(z, _one_hot(y, self.num_classes))
        for width in self.hidden:
            h = _hidden(h, width, self.gated, self.weight_init, self.activation)
        out = nn.Dense(math.prod(self.output_shape) * self.num_params,
                       **dense_init(self.weight_init, h.shape[-1]))(h)
        return out.reshape(z.shape[0], *self.output_shape, self.num_params)


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (+ReLU) -> flatten -> Dense+ReLU -> Dense(2z).

    With channels (32, 32, 64, 64), kernel 4 and dense 256 on 64×64 inputs this is the
    architecture of Higgins et al. (2017) / Burgess et al. (2018) used by disentanglement_lib.
    """
    channels: Sequence[int]
    dense: int
    latents: int
    kernel: int = 4
    num_classes: int = 0
    context: int = 0
    convolutional = True  # vmapped over sweep points, its convolutions become grouped ones

    @nn.compact
    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None):
        h = x
        for c in self.channels:
            h = relu(Conv(c, (self.kernel, self.kernel), strides=(2, 2), padding='SAME')(h))
        h = _concat(h.reshape(h.shape[0], -1), _one_hot(y, self.num_classes))
        h = relu(nn.Dense(self.dense)(h))
        return _posterior_head(h, self.latents, self.context)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: Dense -> Dense to a small feature map -> ×2 upsamplings
    (`upsample.UPSAMPLERS[upsample]`: by default the paper's k×k, stride-2 transposed
    convolutions).

    The feature map starts at ceil(size / 2^n) for n upsamplings and the result is cropped
    to `output_shape` (e.g. 2 -> 32 -> 28 for four layers on MNIST; 4 -> 64 on dSprites).
    Its ReLUs are `activations.relu_minus_zero` (the encoder's values and derivatives; see
    there why).
    """
    channels: Sequence[int]      # encoder order; the decoder runs them in reverse
    dense: int
    output_shape: Sequence[int]  # (h, w, c)
    num_params: int = 1
    num_classes: int = 0
    upsample: str = 'transposed'  # a name in upsample.UPSAMPLERS
    kernel: int = 4

    @nn.compact
    def __call__(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        height, width, out_c = self.output_shape
        n = len(self.channels)
        h0, w0 = -(-height // 2**n), -(-width // 2**n)
        h = _concat(z, _one_hot(y, self.num_classes))
        h = relu_minus_zero(nn.Dense(self.dense)(h))
        h = relu_minus_zero(nn.Dense(h0 * w0 * self.channels[-1])(h))
        h = h.reshape(z.shape[0], h0, w0, self.channels[-1])
        out_channels = list(reversed(self.channels[:-1])) + [out_c * self.num_params]
        for i, c in enumerate(out_channels):
            h = UPSAMPLERS[self.upsample](c, self.kernel)(h)
            if i < n - 1:
                h = relu_minus_zero(h)
        h = h[:, :height, :width, :]
        return h.reshape(z.shape[0], height, width, out_c, self.num_params)


class VAE(nn.Module):
    """One layer of latents: an encoder, a decoder, a prior (`priors`) and an optional
    posterior flow (`flows`); `__call__` runs them all (used only to initialise parameters).
    `model_fns.ModelFns` composes these methods into inference and generation."""
    encoder: nn.Module
    decoder: nn.Module
    prior: nn.Module
    flow: Optional[nn.Module] = None

    def encode(self, x: jax.Array, y: Optional[jax.Array] = None):
        """x: [b, *example_shape], y: [b] int or None -> (mean [b, z], logvar [b, z]) and,
        with a flow, its context [b, c]."""
        return self.encoder(x, y)

    def decode(self, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        """z: [b, z], y: [b] int or None -> likelihood parameters [b, *example_shape, k]."""
        return self.decoder(z, y)

    def transform(self, z0: jax.Array, context: jax.Array):
        """The posterior flow: z0 [b, z], context [b, c] -> (z [b, z], log_det [b])."""
        return self.flow(z0, context)

    def prior_log_prob(self, z: jax.Array) -> jax.Array:
        """z: [b, z] -> log p(z) [b]."""
        return self.prior.log_prob(z)

    def prior_sample(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        """n latents [n, z] ~ p(z), the noise scaled by `temperature`."""
        return self.prior.sample(key, n, temperature)

    def prior_kl_per_dim(self, mean: jax.Array, logvar: jax.Array):
        """Analytic KL(N(mean, e^logvar) || p(z)) per dimension [b, z], or None (`priors`)."""
        return self.prior.kl_per_dim(mean, logvar)

    def __call__(self, x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        h = self.encode(x, y)
        z = h[0] if self.flow is None else self.flow(h[0], h[2])[0]
        self.prior.log_prob(z)  # creates a learned prior's parameters
        return self.decode(z, y)


def decoder_hidden(model_config) -> tuple[int, ...]:
    """The decoder MLP's widths: `model.decoder_hidden`, or `model.hidden` mirrored."""
    c = model_config
    return tuple(c.decoder_hidden) or tuple(reversed(c.hidden))


def mlp(model_config, shape: tuple, num_params: int, num_classes: int, context: int = 0):
    """(MLPEncoder, MLPDecoder) with widths `model.hidden` (the decoder's: `decoder_hidden`)
    and the activations `model.activation` (the decoder's: `decoder_activation`)."""
    c = model_config
    return (MLPEncoder(tuple(c.hidden), c.latents, num_classes, context, weight_init=c.init,
                       activation=c.activation),
            MLPDecoder(decoder_hidden(c), shape, num_params, num_classes, weight_init=c.init,
                       activation=c.decoder_activation or c.activation))


def gated_mlp(model_config, shape: tuple, num_params: int, num_classes: int, context: int = 0):
    """The gated `MLPEncoder`, `MLPDecoder` with widths `model.hidden` (mirrored)."""
    c = model_config
    return (MLPEncoder(tuple(c.hidden), c.latents, num_classes, context, gated=True,
                       weight_init=c.init),
            MLPDecoder(tuple(reversed(c.hidden)), shape, num_params, num_classes, gated=True,
                       weight_init=c.init))


def conv(model_config, shape: tuple, num_params: int, num_classes: int, context: int = 0):
    """(ConvEncoder, ConvDecoder) with `model.conv_channels`, `kernel` and `dense`."""
    c = model_config
    if len(shape) != 3:
        raise UserError(f'the conv encoder needs images [h, w, c]; this dataset has {shape}')
    return (ConvEncoder(tuple(c.conv_channels), c.dense, c.latents, c.kernel, num_classes,
                        context),
            ConvDecoder(tuple(c.conv_channels), c.dense, shape, num_params, num_classes,
                        c.upsample, c.kernel))


# config.model.encoder -> (model_config, example_shape, outputs per pixel, classes to condition
# on or 0, context size of a posterior flow or 0) -> (encoder, decoder). A new network: its
# modules and one line here.
NETWORKS = {
    'mlp': mlp,
    'gated_mlp': gated_mlp,
    'conv': conv,
}


def single_layer(model_config, example_shape: tuple, num_params: int, num_classes: int) -> VAE:
    """The `VAE` of one latent layer: `model.encoder`'s networks, `model.prior`, and the flow of
    `model.posterior` (whose context the encoder then also emits)."""
    c = model_config
    flow = flows.make(c)
    encoder, decoder = NETWORKS[c.encoder](c, example_shape, num_params, num_classes,
                                           0 if flow is None else c.flow_hidden)
    prior = priors.make(c, example_shape=example_shape, encoder=encoder)
    return VAE(encoder, decoder, prior, flow)


# config.model.name -> a factory (model_config, example_shape, outputs per pixel, classes or 0)
# -> a linen module: `VAE` above, or a hierarchy with the methods `model_fns.HierarchyFns`
# calls. Entries may be 'module:factory' strings, imported when used.
MODELS = {
    'vae': single_layer,
    'hvae': 'vae_jax.hierarchies:two_layer',
    'gated_hvae': 'vae_jax.gated_hierarchy:build',
    'vdvae': 'vae_jax.vdvae:build',
}


def gaussian_posterior(model_config) -> bool:
    """Whether q(z|x) is one diagonal Gaussian, known from the config alone."""
    return model_config.name == 'vae' and flows.make(model_config) is None


def analytic_kl(model_config) -> bool:
    """Whether the ELBO's KL has a closed form per dimension (for free bits), from the config."""
    return gaussian_posterior(model_config) and priors.make(model_config).analytic_kl


def build_model(model_config, example_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Builds the model a `config.model` describes, for examples of `example_shape`.

    `num_classes` is used only when `model_config.conditional` is set.
    """
    c = model_config
    if c.conditional and num_classes <= 0:
        raise UserError('model.conditional=True needs a labelled dataset')
    cond = num_classes if c.conditional else 0
    k = likelihoods.make(c).num_params
    factory = registry.lookup(MODELS, c.name, 'model.name')
    return factory(c, tuple(example_shape), k, cond)
