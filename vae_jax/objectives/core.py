"""The objective interface and the ELBO terms every objective is built from.

An objective is an `Objective`: a pure per-batch loss plus what the rest of vae_jax needs to
know about it (the `config.objective` fields it reads and their defaults, which of them are
traced hyperparameters, its validation, and any auxiliary model trained beside the VAE).
`objectives.REGISTRY` lists them; the train step, validation, base config and sweeps read it.

Reduction convention: per-example terms are sums over pixels and latent dimensions (nats);
every batch quantity returned here is the *mean over the batch* of those sums. Terms that need
batch statistics use the *global* batch through axis-name collectives, so a step on 1, 2 or 8
devices sharing the same global batch computes the same loss and gradients.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from vae_jax import models
from vae_jax.errors import UserError


Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a loss reads besides (params, x, y, keys); built by the train step.

    Attributes:
      fns: the model's `model_fns.ModelFns`.
      settings: {field: value} for every `config.objective` field the objective declares:
        python values, except traced hyperparameters, which are [] arrays.
      step: [] int, the optimizer step being taken (0 for the first).
      axis_name: the device axis the batch is split over, or None.
      aux: the auxiliary model's current state (`Objective.aux`: a flax TrainState with its
        apply_fn and params), else None.
    """
    fns: Any
    settings: Mapping[str, Any]
    step: jax.Array
    axis_name: Optional[str] = None
    aux: Any = None


@dataclasses.dataclass(frozen=True)
class Aux:
    """A model an objective trains beside the VAE with its own optimizer (FactorVAE's critic).

    Attributes:
      init: (key, config) -> flax TrainState, kept in `TrainState.aux`.
      grads: (aux_state, aux_input, key, axis_name) -> (gradients of aux_state.params,
        pmean-ed over axis_name; metrics); aux_input is what the loss returned beside its
        metrics, `key` is `keys.permutation_key` of the step. The train step applies them
        with aux_state's optimizer, as it applies the VAE's.
    """
    init: Callable
    grads: Callable


def _no_check(config) -> None:
    del config


@dataclasses.dataclass(frozen=True)
class Objective:
    """One training objective.

    Attributes:
      loss: (params, x [b, ...], y [b] | None, keys [b], ctx: Context) ->
        (loss [], (metrics {name: []}, aux_input or None)): batch means over this device's
        examples, with any global-batch statistics taken over `ctx.axis_name`.
      defaults: {field: default} of the `config.objective` fields it reads. Every objective's
        fields are declared in the base config from these; one field shared by several
        objectives has one default.
      traced: the fields (floats) passed to the step as traced data: another value reuses
        the compiled step, and a vmapped sweep group gives each point its own.
      check: (config) -> None, raises UserError for a bad value of a field it reads.
      aux: an auxiliary model trained beside the VAE, or None.
      missing_data: the loss reads NaN pixels as missing (trains with data.train_missing).
    """
    loss: Callable
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    traced: tuple[str, ...] = ()
    check: Callable[[Any], None] = _no_check
    aux: Optional[Aux] = None
    missing_data: bool = False


def require_gaussian_posterior(config) -> None:
    """UserError unless q(z|x) is one diagonal Gaussian: for objectives that read its mean and
    variance (β-TCVAE's estimator, DIP-VAE's covariance) or treat z as one vector (FactorVAE)."""
    c = config.model
    if not models.gaussian_posterior(c):
        raise UserError(f'objective.name={config.objective.name!r} needs a one-layer Gaussian '
                        f'q(z|x); model.name={c.name!r} with model.posterior={c.posterior!r} '
                        f'is not one')


def pmean(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def gather(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
    """[b, ...] on each device -> [B, ...] global batch, in global-index order."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def negative_elbo(log_lik: jax.Array, kl: jax.Array, beta: float = 1.0) -> jax.Array:
    """β-weighted negative ELBO of one example: -log p(x|z) + β KL (Higgins et al. 2017).

    Args:
      log_lik: [] log p(x | z) for a posterior sample z.
      kl: [] KL(q(z|x) || p(z)).
      beta: KL weight; 1 gives the ELBO of Kingma & Welling (2014).

    Returns:
      [] nats.
    """
    return -log_lik + beta * kl


def elbo_terms(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array,
               fns) -> Mapping[str, jax.Array]:
    """Per-example ELBO terms with one reparameterized sample per example.

    Args:
      params: model parameters.
      x: [b, ...] inputs; y: [b] int labels or None.
      keys: [b] one PRNG key per example (derived from its global batch index by the caller).
      fns: the model's `ModelFns`.

    Returns:
      {'log_lik': [b], 'kl': [b]} in nats, 'kl' summed over latent groups (analytic where the
      model has a closed form, else log q(z|x) - log p(z) at the sample); 'kl_groups' [b, G];
      'kl_per_dim' [b, Z] or None; the sample 'z' [b, Z] and the Gaussian it was drawn from,
      'mean', 'logvar' [b, Z] (see `model_fns.Latents`).
    """
    out, lat = fns.infer(params, fns.features(params, x, y), y, keys)
    return {'log_lik': fns.log_lik(x, out), 'kl': jnp.sum(lat.kl, axis=-1),
            'kl_groups': lat.kl, 'kl_per_dim': lat.kl_per_dim,
            'mean': lat.mean, 'logvar': lat.logvar, 'z': lat.z}


def elbo_metrics(terms: Mapping[str, jax.Array], loss: jax.Array, **extra) -> Metrics:
    """Batch means of 'neg_elbo', 'recon' (-log p(x|z)) and 'kl' from `elbo_terms` (and, for a
    model with several latent groups, 'kl_group_<g>' of each), the training 'loss', and any
    `extra` scalars."""
    metrics = {'loss': loss, 'neg_elbo': jnp.mean(-terms['log_lik'] + terms['kl']),
               'recon': jnp.mean(-terms['log_lik']), 'kl': jnp.mean(terms['kl'])}
    groups = terms.get('kl_groups')
    if groups is not None and groups.shape[-1] > 1:  # a hierarchy: each group's KL too
        metrics.update({f'kl_group_{g}': jnp.mean(groups[:, g]) for g in range(groups.shape[-1])})
    return dict(metrics, **extra)


def neg_elbo_plus(terms: Mapping[str, jax.Array], penalty: jax.Array, **extra):
    """(loss, (metrics, None)) for the batch-mean -ELBO plus `penalty` []: the form of the
    β-VAE family's regularized objectives."""
    loss = jnp.mean(-terms['log_lik'] + terms['kl']) + penalty
    return loss, (elbo_metrics(terms, loss, **extra), None)
