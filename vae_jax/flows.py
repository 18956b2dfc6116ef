"""Posterior flows: q(z|x) = a diagonal Gaussian pushed through invertible maps.

A flow is a linen module inside the VAE (`VAE.flow`) called as `flow(z0 [b, z], context
[b, c]) -> (z [b, z], log_det [b])`, log_det = log |det ∂z/∂z0|, so that

    log q(z|x) = log N(z0; mean, diag exp(logvar)) - log_det.

The posterior then has no closed-form KL against any prior; the objectives use the
single-sample estimate log q(z|x) - log p(z). `REGISTRY` maps `config.model.posterior` to a
factory `(model_config) -> module or None` (None: the plain Gaussian posterior).

Inverse autoregressive flow (Kingma et al. 2016, "Improved variational inference with inverse
autoregressive flow", §4 and appendix): each step computes (m, s) = MADE(z, h), an
autoregressive network of z (output i reads z_<i only) that also reads the context h the
encoder emits, and updates

    σ = sigmoid(s),  z ← σ ⊙ z + (1 - σ) ⊙ m,  log_det += Σ_i log σ_i,

the numerically stable, LSTM-like form of their eq. (14)-(15). The Jacobian of one step is
triangular with diagonal σ. The order of the latents is reversed between steps, so every
dimension can depend on every other after two.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import registry


def made_masks(dims: int, hidden: int, layers: int) -> list[np.ndarray]:
    """The connectivity masks of a MADE (Germain et al. 2015) with `layers` hidden layers.

    Input and output unit i has degree i + 1; hidden units cycle through degrees 1 .. dims-1.
    A hidden unit may read the inputs of degree <= its own; an output may read the hidden
    units of degree < its own. So output i depends on inputs < i only (output 0 on none).

    Returns:
      `layers + 1` float32 masks: [dims, hidden], then [hidden, hidden] ..., then [hidden, dims].
    """
    inputs = np.arange(1, dims + 1)
    units = np.arange(hidden) % max(dims - 1, 1) + 1
    masks = [(units[None, :] >= inputs[:, None])]
    masks += [(units[None, :] >= units[:, None])] * (layers - 1)
    masks.append(inputs[None, :] > units[:, None])
    return [m.astype(np.float32) for m in masks]


class MaskedDense(nn.Module):
    """Dense layer whose kernel is multiplied by a fixed 0/1 mask [in, out]."""
    mask: np.ndarray
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param('kernel', self.kernel_init, self.mask.shape)
        bias = self.param('bias', nn.initializers.zeros, self.mask.shape[1:])
        return x @ (kernel * jnp.asarray(self.mask)) + bias


class IAFStep(nn.Module):
    """One IAF step: (m, s) from a MADE of z with the context added to its first hidden
    layer; returns (σ ⊙ z + (1 - σ) ⊙ m [b, z], Σ log σ [b]).

    The gate's bias starts at `gate_bias` (σ ≈ 0.88 for 2) and the last layer's weights at 0,
    so an untrained step is close to the identity (Kingma et al.'s "forget gate bias")."""
    hidden: int
    layers: int = 2
    gate_bias: float = 2.0

    @nn.compact
    def __call__(self, z: jax.Array, context: jax.Array):
        dims = z.shape[-1]
        masks = made_masks(dims, self.hidden, self.layers)
        h = MaskedDense(masks[0])(z) + nn.Dense(self.hidden)(context)
        h = nn.elu(h)
        for mask in masks[1:-1]:
            h = nn.elu(MaskedDense(mask)(h))
        out_mask = np.concatenate([masks[-1], masks[-1]], axis=1)
        m, s = jnp.split(MaskedDense(out_mask, nn.initializers.zeros)(h), 2, axis=-1)
        log_sigma = jax.nn.log_sigmoid(s + self.gate_bias)
        sigma = jnp.exp(log_sigma)
        return sigma * z + (1.0 - sigma) * m, jnp.sum(log_sigma, axis=-1)


class IAF(nn.Module):
    """`steps` IAF steps with the latent order reversed between them (and restored after).

    __call__(z0 [b, z], context [b, c]) -> (z [b, z], log_det [b])."""
    steps: int
    hidden: int
    layers: int = 2

    @nn.compact
    def __call__(self, z: jax.Array, context: jax.Array):
        log_det = jnp.zeros(z.shape[:1], z.dtype)
        for t in range(self.steps):
            if t:
                z = z[:, ::-1]
            z, step_log_det = IAFStep(self.hidden, self.layers)(z, context)
            log_det = log_det + step_log_det
        if self.steps > 1 and (self.steps - 1) % 2:
            z = z[:, ::-1]
        return z, log_det


REGISTRY: dict[str, Callable[..., Optional[nn.Module]] | str] = {
    'gaussian': lambda model_config: None,
    'iaf': lambda c: IAF(c.flow_steps, c.flow_hidden),
}


def make(model_config) -> Optional[nn.Module]:
    """The posterior flow `model_config.posterior` names, or None for a Gaussian posterior."""
    return registry.lookup(REGISTRY, model_config.posterior, 'model.posterior')(model_config)
