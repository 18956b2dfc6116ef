"""vae_jax: variational autoencoders in JAX/Flax.

The notebook-facing API. Per-example functions reduce one example to a scalar by summing
over pixels and latents; batch them with `jax.vmap` and average over the batch.
"""

from vae_jax.configs import base_config
from vae_jax.distributions import (bernoulli_log_likelihood, gaussian_kl, gaussian_kl_per_dim,
                                   gaussian_log_likelihood, gaussian_log_prob, reparameterize,
                                   standard_normal_log_prob)
from vae_jax.errors import UserError
from vae_jax.models import (VAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder,
                            build_model)
from vae_jax.objectives import (beta_schedule, elbo_terms, free_bits_kl, likelihood_mean,
                                log_likelihood, negative_elbo, vae_loss)
from vae_jax.regularizers import (beta_tcvae_loss, capacity_loss, dip_covariance, dip_vae_loss,
                                  factor_vae_loss, permute_dims, total_correlation)
from vae_jax.run import Run, load_run
from vae_jax.steps import (TrainState, create_train_state, eval_step, make_optimizer,
                           pmapped_steps, train_step)
from vae_jax.train import train_and_evaluate

__all__ = [
    'Run', 'VAE', 'ConvDecoder', 'ConvEncoder', 'MLPDecoder', 'MLPEncoder', 'TrainState', 'UserError',
    'base_config', 'bernoulli_log_likelihood', 'beta_schedule', 'build_model',
    'create_train_state', 'elbo_terms', 'eval_step', 'free_bits_kl', 'gaussian_kl',
    'gaussian_kl_per_dim', 'gaussian_log_likelihood', 'gaussian_log_prob', 'likelihood_mean',
    'load_run',
    'log_likelihood', 'make_optimizer', 'negative_elbo', 'pmapped_steps', 'reparameterize',
    'standard_normal_log_prob', 'train_and_evaluate', 'train_step', 'vae_loss',
    'beta_tcvae_loss', 'capacity_loss', 'dip_covariance', 'dip_vae_loss', 'factor_vae_loss',
    'permute_dims', 'total_correlation',
]
