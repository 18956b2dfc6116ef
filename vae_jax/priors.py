"""Priors p(z): one registry entry each, a Flax module inside the VAE.

A prior is a linen module with the methods below; the VAE holds it as `prior`, so a prior
with parameters (a learned mixture, a VampPrior's pseudo-inputs) keeps them in the model's
parameters, trained with the rest, and `model.apply(..., method=model.prior_log_prob)`
evaluates it. `REGISTRY` maps `config.model.prior` to a factory
`(model_config, *, example_shape, encoder) -> module`; adding one is a module with its factory
and one line here (README, "Adding a prior"). Most priors ignore the keywords; the VampPrior
needs the shape of an example (its pseudo-inputs) and the VAE's encoder, which it shares.

Interface, per batch of latents (`z` latent dimensions):
  log_prob(z [b, z]) -> [b] nats, summed over dimensions;
  sample(key, n, temperature=1.0) -> [n, z], with the noise scaled by the temperature;
  kl_per_dim(mean [b, z], logvar [b, z]) -> [b, z] nats, the analytic KL(q(z|x) || p(z)) of
    each dimension of a diagonal Gaussian posterior, or None when there is no closed form
    (the objectives then use the single-sample estimate log q(z|x) - log p(z)).
  The class attribute `analytic_kl` says which, without tracing.
"""

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions as D, registry
from vae_jax.errors import UserError


class StandardNormal(nn.Module):
    """p(z) = N(0, I): no parameters, analytic KL (Kingma & Welling 2014, appendix B)."""
    latents: int
    analytic_kl = True

    def log_prob(self, z: jax.Array) -> jax.Array:
        return jax.vmap(D.standard_normal_log_prob)(z)

    def sample(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        return temperature * jax.random.normal(key, (n, self.latents))

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
        return mixture_log_prob(z, self.means, self.logvars)

    def sample(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        return mixture_sample(key, n, self.means, self.logvars, temperature)

    def kl_per_dim(self, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        del mean, logvar
        return None


def mixture_log_prob(z: jax.Array, means: jax.Array, logvars: jax.Array) -> jax.Array:
    """log (1/K) Σ_k N(z; means_k, diag exp(logvars_k)): z [b, z], means/logvars [K, z] -> [b].

    Written as ||z||² terms and one [b, z] x [z, K] matmul rather than a [b, K, z] array: for
    the VampPrior's K = 500 that array is what would dominate a step's memory.
    """
    precision = jnp.exp(-logvars)  # [K, z]
    quadratic = (jnp.square(z) @ precision.T - 2.0 * z @ (means * precision).T
                 + jnp.sum(jnp.square(means) * precision, axis=-1))  # [b, K]
    log_norm = -0.5 * (jnp.sum(logvars, axis=-1) + z.shape[-1] * np.log(2 * np.pi))  # [K]
    return (jax.nn.logsumexp(log_norm - 0.5 * quadratic, axis=-1)
            - jnp.log(jnp.float32(means.shape[0])))


def mixture_sample(key: jax.Array, n: int, means: jax.Array, logvars: jax.Array,
                   temperature: float = 1.0) -> jax.Array:
    """n draws [n, z] from the uniform mixture of N(means_k, diag exp(logvars_k)), the noise
    within a component scaled by `temperature`."""
    component_key, noise_key = jax.random.split(key)
    k = jax.random.randint(component_key, (n,), 0, means.shape[0])
    noise = jax.random.normal(noise_key, (n, means.shape[1]))
    return means[k] + temperature * jnp.exp(0.5 * logvars[k]) * noise


class VampPrior(nn.Module):
    """p(z) = (1/K) Σ_k q(z | u_k): the mixture of the encoder's posteriors at K learned
    pseudo-inputs u_k (Tomczak & Welling 2018, eq. 9). No analytic KL.

    The pseudo-inputs are parameters [K, *example_shape] passed through a hard tanh to the data
    range [0, 1] and initialised ~ N(init_mean, init_std²), as in the paper's code for MNIST
    (their `pseudoinputs_mean`, `pseudoinputs_std`). `encoder` is the VAE's own encoder (the
    same module, so the same parameters); the prior's gradient trains it too.
    """
    latents: int
    components: int
    example_shape: Sequence[int]
    encoder: Any
    init_mean: float = 0.05
    init_std: float = 0.01
    analytic_kl = False

    def setup(self):
        self.pseudo_inputs = self.param(
            'pseudo_inputs',
            lambda key, shape: self.init_mean + self.init_std * jax.random.normal(key, shape),
            (self.components, *self.example_shape))

    def _posteriors(self):
        u = jnp.clip(self.pseudo_inputs, 0.0, 1.0)
        out = self.encoder(u)
        return out[0], out[1]  # (means, logvars) [K, z]; a flow context is ignored

    def log_prob(self, z: jax.Array) -> jax.Array:
        return mixture_log_prob(z, *self._posteriors())

    def sample(self, key: jax.Array, n: int, temperature: float = 1.0) -> jax.Array:
        return mixture_sample(key, n, *self._posteriors(), temperature)

    def kl_per_dim(self, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        del mean, logvar
        return None


def vampprior(model_config, *, example_shape, encoder) -> VampPrior:
    if model_config.conditional:
        raise UserError('model.prior=vampprior needs an unconditional encoder; '
                        'model.conditional=True encodes (x, y)')
    return VampPrior(model_config.latents, model_config.prior_components, tuple(example_shape),
                     encoder)


REGISTRY: dict[str, Callable[..., nn.Module] | str] = {
    'standard_normal': lambda model_config, **unused: StandardNormal(model_config.latents),
    'gaussian_mixture': lambda c, **unused: GaussianMixture(c.latents, c.prior_components),
    'vampprior': vampprior,
}


def make(model_config, *, example_shape: Sequence[int] = (), encoder: Any = None) -> nn.Module:
    """The prior `model_config.prior` names (an entry is a factory or 'module:factory'), for
    examples of `example_shape` and the VAE's `encoder` (only a VampPrior uses them)."""
    factory = registry.lookup(REGISTRY, model_config.prior, 'model.prior')
    return factory(model_config, example_shape=example_shape, encoder=encoder)
