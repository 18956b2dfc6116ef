"""Priors p(z): one registry entry each, a Flax module inside the VAE.

A prior is a linen module with the methods below; the VAE holds it as `prior`, so a prior
with parameters (a learned mixture, a VampPrior's pseudo-inputs) keeps them in the model's
parameters, trained with the rest, and `model.apply(..., method=model.prior_log_prob)`
evaluates it. `REGISTRY` maps `config.model.prior` to a factory `(model_config) -> module`;
adding one is a module with its factory and one line here (README, "Adding a prior").

Interface, per batch of latents (`z` latent dimensions):
  log_prob(z [b, z]) -> [b] nats, summed over dimensions;
  sample(key, n) -> [n, z];
  kl_per_dim(mean [b, z], logvar [b, z]) -> [b, z] nats, the analytic KL(q(z|x) || p(z)) of
    each dimension of a diagonal Gaussian posterior, or None when there is no closed form
    (the objectives then use the single-sample estimate log q(z|x) - log p(z)).
  The class attribute `analytic_kl` says which, without tracing.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax

from vae_jax import distributions as D, registry


class StandardNormal(nn.Module):
    """p(z) = N(0, I): no parameters, analytic KL (Kingma & Welling 2014, appendix B)."""
    latents: int
    analytic_kl = True

    def log_prob(self, z: jax.Array) -> jax.Array:
        return jax.vmap(D.standard_normal_log_prob)(z)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.normal(key, (n, self.latents))

    def kl_per_dim(self, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        return jax.vmap(D.gaussian_kl_per_dim)(mean, logvar)


REGISTRY: dict[str, Callable[..., nn.Module] | str] = {
    'standard_normal': lambda model_config: StandardNormal(model_config.latents),
}


def make(model_config) -> nn.Module:
    """The prior `model_config.prior` names (an entry is a factory or 'module:factory')."""
    return registry.lookup(REGISTRY, model_config.prior, 'model.prior')(model_config)
