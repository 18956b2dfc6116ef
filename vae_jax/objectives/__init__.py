"""Training objectives: one module each, one line each in `REGISTRY`.

`config.objective.name` picks an entry: the name of a module of this package whose `OBJECTIVE`
(an `Objective`, see `core`) gives the loss, the `config.objective` fields it reads with their
defaults, which of them are traced hyperparameters, its validation and any auxiliary model.
The base config, validation, the train step and sweeps read this registry; nothing else lists
objective names. Adding one: README, "Adding an objective".
"""

import importlib

from vae_jax.objectives.core import (Aux, Context, Objective, elbo_metrics, elbo_terms,
                                     negative_elbo)
from vae_jax.objectives.elbo import beta_schedule, free_bits_kl, vae_loss
from vae_jax.objectives.iwae import iwae_bound, iwae_log_weights, iwae_loss

__all__ = ['Aux', 'Context', 'Objective', 'REGISTRY', 'beta_schedule', 'declared_fields',
           'elbo_metrics', 'elbo_terms', 'free_bits_kl', 'get', 'iwae_bound', 'iwae_log_weights',
           'iwae_loss', 'negative_elbo', 'vae_loss']

# config.objective.name -> the module of vae_jax.objectives that defines its OBJECTIVE.
REGISTRY = {
    'elbo': 'elbo',
    'iwae': 'iwae',
    'capacity': 'capacity',
    'beta_tcvae': 'beta_tcvae',
    'factor_vae': 'factor_vae',
    'dip_vae': 'dip_vae',
    'cyclical': 'cyclical',
    'miwae': 'miwae',
    'ciwae': 'ciwae',
    'piwae': 'piwae',
    'missing_iwae': 'missing_iwae',
}


def get(name: str) -> Objective:
    """The registered objective `name` (validated by configs.validate)."""
    return importlib.import_module(f'vae_jax.objectives.{REGISTRY[name]}').OBJECTIVE


def declared_fields() -> dict:
    """{field: default} of every registered objective's `config.objective` fields.

    Raises ValueError when two objectives give one field different defaults.
    """
    fields: dict = {}
    for name in REGISTRY:
        for field, default in get(name).defaults.items():
            if field in fields and fields[field] != default:
                raise ValueError(f'objective {name!r} declares objective.{field}={default!r}; '
                                 f'another objective declares {fields[field]!r}')
            fields[field] = default
    return fields
