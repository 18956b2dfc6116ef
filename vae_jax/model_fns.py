"""`ModelFns`: the functions of one VAE, built once from the config and passed explicitly.

Inference, generation, likelihood and prior in one bundle, so that the train step, the bounds,
the evaluation and a notebook call the same functions instead of re-assembling them:

    fns = build(config.model, example_shape=(28, 28, 1), num_classes=10)
    h = fns.features(params, x, y)                 # deterministic encoder output, once per x
    out, lat = fns.infer(params, h, y, keys)       # one posterior sample per example, decoded
    elbo = fns.log_lik(x, out) - lat.kl.sum(-1)    # [b] nats
    log_w = fns.log_lik(x, out) + lat.log_p.sum(-1) - lat.log_q.sum(-1)   # importance weight

Every method is batched over a leading axis b and sums over pixels / latent dimensions. A model
has one or more *groups* of latents (a hierarchy has several); `Latents` carries the per-group
terms, and `z` is all groups concatenated, which is what `decode` reads.
"""

import dataclasses
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions as D, likelihoods
from vae_jax.latent_sample import Latents
from vae_jax.models import build_model


@dataclasses.dataclass(frozen=True)
class ModelFns:
    """The functions of a one-latent-layer `models.VAE`; `params` are `module`'s parameters.

    Attributes:
      module: the linen module (`module.init` creates the parameters).
      likelihood: its `likelihoods.Likelihood`.
      conditional: whether the networks read labels y (a CVAE); otherwise y is ignored.
    """
    module: nn.Module
    likelihood: likelihoods.Likelihood
    conditional: bool = False

    def _y(self, y):
        return y if self.conditional else None

    def _apply(self, params, method: str, *args):
        return self.module.apply({'params': params}, *args, method=getattr(self.module, method))

    # -- inference -------------------------------------------------------------------------
    def features(self, params, x: jax.Array, y: Optional[jax.Array] = None) -> Any:
        """x [b, ...], y [b] -> the deterministic part of inference (a pytree, leading dim b),
        computed once per example however many samples `infer` then draws."""
        return self._apply(params, 'encode', x, self._y(y))

    def infer(self, params, h: Any, y: Optional[jax.Array], keys: jax.Array):
        """One posterior sample per example, decoded.

        Args:
          params: parameters; h: `features` of a batch; y: [b] labels or None.
          keys: [b] one PRNG key per example: its sample is a function of this key alone.

        Returns:
          (out [b, ..., k] the decoder's output at the sample, `Latents`).
        """
        mean, logvar = h[0], h[1]
        z = jax.vmap(D.reparameterize)(keys, mean, logvar)
        log_q = jax.vmap(D.gaussian_log_prob)(z, mean, logvar)
        kl_per_dim = None
        if len(h) > 2:  # a posterior flow: log q(z) = log N(z0) - log |det dz/dz0|
            z, log_det = self._apply(params, 'transform', z, h[2])
            log_q = log_q - log_det
        else:
            kl_per_dim = self.kl_per_dim(params, mean, logvar)
        log_p = self.prior_log_prob(params, z)
        kl = log_q - log_p if kl_per_dim is None else jnp.sum(kl_per_dim, axis=-1)
        latents = Latents(z, mean, logvar, log_q[:, None], log_p[:, None], kl[:, None],
                          kl_per_dim)
        return self.decode(params, z, y), latents

    def encode(self, params, x: jax.Array, y: Optional[jax.Array] = None):
        """x [b, ...], y [b] -> (location [b, Z], logvar [b, Z]): the latent that zero noise
        maps to (the posterior mean of a Gaussian q; the flow's image of the base mean with a
        flow), and the base Gaussian's log-variance. What pictures and probes read."""
        h = self.features(params, x, y)
        if len(h) > 2:
            return self._apply(params, 'transform', h[0], h[2])[0], h[1]
        return h[0], h[1]

    # -- generation ------------------------------------------------------------------------
    def decode(self, params, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        """z [b, Z], y [b] -> the likelihood's parameters [b, ..., k]."""
        return self._apply(params, 'decode', z, self._y(y))

    def sample_prior(self, params, key: jax.Array, n: int, temperature: float = 1.0):
        """[n, Z] latents drawn from the prior, its noise scaled by `temperature`."""
        return self._apply(params, 'prior_sample', key, n, temperature)

    def log_lik(self, x: jax.Array, out: jax.Array) -> jax.Array:
        """log p(x | z) [b] from x [b, ...] and the decoder output [b, ..., k].

        The pixels are flattened first (a `Likelihood.log_prob` is a sum of per-pixel terms):
        XLA:CPU reduces a [500, 28, 28, 1] array many times slower than a [500, 784] one.
        """
        b = x.shape[0]
        return jax.vmap(self.likelihood.log_prob)(x.reshape(b, -1),
                                                  out.reshape(b, -1, out.shape[-1]))

    def mean(self, out: jax.Array) -> jax.Array:
        """E[x | z] [b, ...] from the decoder output [b, ..., k]."""
        return self.likelihood.mean(out)

    def decode_mean(self, params, z: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
        """E[x | z] [b, ...] for latents z [b, Z]."""
        return self.mean(self.decode(params, z, y))

    # -- the prior of a single latent layer ------------------------------------------------
    def prior_log_prob(self, params, z: jax.Array) -> jax.Array:
        """log p(z) [b] for z [b, z]."""
        return self._apply(params, 'prior_log_prob', z)

    def kl_per_dim(self, params, mean: jax.Array, logvar: jax.Array) -> Optional[jax.Array]:
        """Analytic KL(N(mean, e^logvar) || p(z)) per dimension [b, z], or None."""
        return self._apply(params, 'prior_kl_per_dim', mean, logvar)

    # -- what callers may ask without tracing ----------------------------------------------
    @property
    def groups(self) -> tuple[int, ...]:
        """The size of each latent group; `Latents.z` has sum(groups) columns."""
        return (int(self.module.prior.latents),)

    @property
    def latents(self) -> int:
        return sum(self.groups)

    @property
    def gaussian_posterior(self) -> bool:
        """Whether q(z|x) is one diagonal Gaussian N(mean, e^logvar): what the objectives that
        read its parameters (β-TCVAE's estimator, DIP-VAE's covariance) need."""
        return self.module.flow is None

    @property
    def analytic_kl(self) -> bool:
        """Whether `infer` returns the closed-form KL (and `kl_per_dim`)."""
        return self.gaussian_posterior and bool(getattr(self.module.prior, 'analytic_kl', False))

    @property
    def inference_params(self) -> tuple[str, ...]:
        """The top-level parameter collections of q(z|x) (the rest belong to p(x, z))."""
        return ('encoder', 'flow')


@dataclasses.dataclass(frozen=True)
class HierarchyFns(ModelFns):
    """The functions of a model with several latent groups (`hierarchies`): inference,
    decoding and prior sampling are the module's own methods."""

    def features(self, params, x, y=None):
        return self._apply(params, 'features', x, self._y(y))

    def infer(self, params, h, y, keys):
        return self._apply(params, 'infer', h, self._y(y), keys)

    def encode(self, params, x, y=None):
        return self._apply(params, 'encode', x, self._y(y))

    def sample_prior(self, params, key, n, temperature=1.0):
        return self._apply(params, 'sample_prior', key, n, temperature)

    def prior_log_prob(self, params, z):
        raise NotImplementedError('a hierarchy has no p(z) of one group; use infer')

    def kl_per_dim(self, params, mean, logvar):
        return None

    @property
    def groups(self):
        return tuple(self.module.groups)

    @property
    def gaussian_posterior(self) -> bool:
        return False

    @property
    def analytic_kl(self) -> bool:
        return bool(self.module.analytic_kl)

    @property
    def inference_params(self):
        return tuple(self.module.inference_params)


def build(model_config, example_shape: Sequence[int], num_classes: int) -> ModelFns:
    """The functions of the model `model_config` describes (see `models.build_model`)."""
    module = build_model(model_config, example_shape, num_classes)
    cls = HierarchyFns if hasattr(module, 'infer') else ModelFns
    return cls(module, likelihoods.make(model_config), bool(model_config.conditional))
