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
import jax.numpy as jnp

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


class GaussianMixture(nn.Module):
    """p(z) = (1/K) Σ_k N(z; μ_k, diag exp(logvar_k)), K = `components`, with learned means
    (initialised ~ N(0, 1)) and log-variances (initialised 0); uniform weights, as the mixture
    prior Tomczak & Welling (2018) compare with the VampPrior. No analytic KL."""
    latents: int
    components: int
    analytic_kl = False

    def setup(self):
        self.means = self.param('means', nn.initializers.normal(1.0),
                                (self.components, self.latents))
        self.logvars = self.param('logvars', nn.initializers.zeros,
                                  (self.components, self.latents))

    def log_prob(self, z: jax.Array) -> jax.Array:
        """[b, z] -> [b]: logsumexp_k log N(z; μ_k, σ_k²) - log K."""
        per_component = jax.vmap(jax.vmap(D.gaussian_log_prob, (None, 0, 0)), (0, None, None))
        log_probs = per_component(z, self.means, self.logvars)  # [b, K]
        return jax.nn.logsumexp(log_probs, axis=-1) - jnp.log(self.components)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        component_key, noise_key = jax.random.split(key)
        k = jax.random.randint(component_key, (n,), 0, self.components)
        noise = jax.random.normal(noise_key, (n, self.latents))
        return self.means[k] + jnp.exp(0.5 * self.logvars[k]) * noise

    def kl_per_dim(self, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        del mean, logvar
        return None


REGISTRY: dict[str, Callable[..., nn.Module] | str] = {
    'standard_normal': lambda model_config: StandardNormal(model_config.latents),
    'gaussian_mixture': lambda c: GaussianMixture(c.latents, c.prior_components),
}


def make(model_config) -> nn.Module:
    """The prior `model_config.prior` names (an entry is a factory or 'module:factory')."""
    return registry.lookup(REGISTRY, model_config.prior, 'model.prior')(model_config)
