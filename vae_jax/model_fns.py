"""`ModelFns`: the functions of one VAE, built once from the config and passed explicitly.

Encoder, decoder, likelihood and prior in one bundle, so that the train step, the bounds, the
evaluation and a notebook call the same functions instead of re-assembling them:

    fns = build(config.model, example_shape=(28, 28, 1), num_classes=10)
    mean, logvar = fns.encode(params, x, y)     # [b, z] each
    log_lik = fns.log_lik(x, fns.decode(params, z, y))   # [b] nats

Every method is batched over a leading axis b and sums over pixels / latent dimensions.
"""

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax

from vae_jax import likelihoods
from vae_jax.models import build_model


@dataclasses.dataclass(frozen=True)
class ModelFns:
    """A VAE's encode, decode, likelihood and prior; `params` are `module`'s parameters.

    Attributes:
      module: the `models.VAE` linen module (`module.init` creates the parameters).
      likelihood: its `likelihoods.Likelihood`.
      conditional: whether encode/decode read labels y (a CVAE); otherwise y is ignored.
    """
    module: nn.Module
    likelihood: likelihoods.Likelihood
    conditional: bool = False

    def _y(self, y):
        return y if self.conditional else None

    def encode(self, params, x: jax.Array, y: Optional[jax.Array] = None):
        """x [b, ...], y [b] -> (mean [b, z], logvar [b, z]) of q(z | x)."""
        return self.module.apply({'params': params}, x, self._y(y), method=self.module.encode)

    def decode(self, params, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        """z [b, z], y [b] -> the likelihood's parameters [b, ..., k]."""
        return self.module.apply({'params': params}, z, self._y(y), method=self.module.decode)

    def log_lik(self, x: jax.Array, out: jax.Array) -> jax.Array:
        """log p(x | z) [b] from x [b, ...] and the decoder output [b, ..., k]."""
        return jax.vmap(self.likelihood.log_prob)(x, out)

    def mean(self, out: jax.Array) -> jax.Array:
        """E[x | z] [b, ...] from the decoder output [b, ..., k]."""
        return self.likelihood.mean(out)

    def decode_mean(self, params, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        """E[x | z] [b, ...] for latents z [b, z]."""
        return self.mean(self.decode(params, z, y))

    def prior_log_prob(self, params, z: jax.Array) -> jax.Array:
        """log p(z) [b] for z [b, z]."""
        return self.module.apply({'params': params}, z, method=self.module.prior_log_prob)

    def prior_sample(self, params, key: jax.Array, n: int) -> jax.Array:
        """[n, z] latents drawn from the prior."""
        return self.module.apply({'params': params}, key, n, method=self.module.prior_sample)

    def kl_per_dim(self, params, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        """Analytic KL(q(z|x) || p(z)) per dimension [b, z], or None without a closed form."""
        return self.module.apply({'params': params}, mean, logvar,
                                 method=self.module.prior_kl_per_dim)

    @property
    def analytic_kl(self) -> bool:
        return bool(getattr(self.module.prior, 'analytic_kl', False))


def build(model_config, example_shape: Sequence[int], num_classes: int) -> ModelFns:
    """The `ModelFns` of the VAE `model_config` describes (see `models.build_model`)."""
    return ModelFns(build_model(model_config, example_shape, num_classes),
                    likelihoods.make(model_config), bool(model_config.conditional))
