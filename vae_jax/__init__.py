"""vae_jax: variational autoencoders in JAX/Flax.

The notebook-facing API. Per-example functions reduce one example to a scalar by summing
over pixels and latents; batch them with `jax.vmap` and average over the batch.
"""

from vae_jax import allocator, xla_setup

xla_setup.setup()  # before anything starts JAX's backends (see xla_setup)
allocator.tune()  # keep freed memory for the next step (see allocator)

from vae_jax.configs import base_config
from vae_jax.distributions import (bernoulli_log_likelihood, gaussian_kl, gaussian_kl_per_dim,
                                   gaussian_log_likelihood, gaussian_log_prob, reparameterize,
                                   standard_normal_log_prob)
from vae_jax.errors import UserError
from vae_jax.flows import IAF
from vae_jax.hierarchies import HVAE
from vae_jax.latent_sample import Latents
from vae_jax.likelihoods import Likelihood
from vae_jax.model_fns import ModelFns, build as build_model_fns
from vae_jax.models import (VAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder,
                            build_model)
from vae_jax.objectives import (Objective, beta_schedule, elbo_terms, free_bits_kl, iwae_bound,
                                iwae_loss, negative_elbo, vae_loss)
from vae_jax.objectives.beta_tcvae import total_correlation
from vae_jax.objectives.dip_vae import dip_covariance
from vae_jax.objectives.factor_vae import permute_dims
from vae_jax.optim import make_optimizer
from vae_jax.priors import GaussianMixture, StandardNormal, VampPrior
from vae_jax.run import Run, load_run
from vae_jax.steps import (TrainState, create_train_state, eval_step, pmapped_steps,
                           train_step)
from vae_jax.train import train_and_evaluate
from vae_jax.vdvae import VDVAE

__all__ = [
    'ConvDecoder', 'ConvEncoder', 'GaussianMixture', 'HVAE', 'IAF', 'Latents', 'Likelihood',
    'MLPDecoder', 'MLPEncoder', 'ModelFns', 'Objective', 'Run', 'StandardNormal', 'TrainState',
    'UserError', 'VAE', 'VDVAE', 'VampPrior', 'base_config',
    'bernoulli_log_likelihood', 'beta_schedule', 'build_model', 'build_model_fns',
    'create_train_state', 'dip_covariance', 'elbo_terms', 'eval_step', 'free_bits_kl',
    'gaussian_kl', 'gaussian_kl_per_dim', 'gaussian_log_likelihood', 'gaussian_log_prob',
    'iwae_bound', 'iwae_loss', 'load_run', 'make_optimizer', 'negative_elbo', 'permute_dims',
    'pmapped_steps', 'reparameterize', 'standard_normal_log_prob', 'total_correlation',
    'train_and_evaluate', 'train_step', 'vae_loss',
]
