"""The train state, the pure train/eval steps, and their pmapped forms.

Randomness: `train_key = fold_in(seed_key, 1)`; a step draws from `fold_in(train_key, step)` and
each example from `fold_in(step_key, i)` with i its *global* position in the batch (the data
pipeline's 'index'). Nothing depends on the device count, so the same global batch gives the
same numbers on 1, 2 or 8 devices, and a resumed run redraws exactly what it would have drawn.
"""

import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from vae_jax import objectives
from vae_jax.models import VAE

AXIS = 'batch'
TrainState = train_state.TrainState


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """optax optimizer with the configured schedule and optional global-norm clipping."""
    c = optim_config
    if c.schedule == 'constant':
        lr = optax.constant_schedule(c.learning_rate)
    elif c.schedule == 'cosine':
        lr = optax.cosine_decay_schedule(c.learning_rate, max(total_steps, 1))
    else:  # 'warmup_cosine'
        lr = optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, c.warmup_steps,
                                                max(total_steps, c.warmup_steps + 1))
    if c.name == 'adam':
        opt = optax.adam(lr)
    elif c.name == 'adamw':
        opt = optax.adamw(lr, weight_decay=c.weight_decay)
    else:
        opt = optax.sgd(lr, momentum=0.9)
    if c.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(c.grad_clip), opt)
    return opt


def create_train_state(key: jax.Array, model: VAE, tx: optax.GradientTransformation,
                       example_shape: Sequence[int]) -> TrainState:
    """Initialises parameters from `key` with a batch of one example of `example_shape`."""
    x = jnp.zeros((1, *example_shape), jnp.float32)
    y = jnp.zeros((1,), jnp.int32)
    params = model.init(key, x, y)['params']
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def example_keys(step_key: jax.Array, index: jax.Array) -> jax.Array:
    """One key per example from its global batch index: index [b] int -> keys [b]."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, index)


def prepare_inputs(batch: Mapping[str, jax.Array], keys: jax.Array, binarize: str):
    """Returns (x [b, ...], y [b]); 'dynamic' binarization samples pixels ~ Bernoulli(x).

    The binarization key is `fold_in(example_key, 1)`, so it never collides with the
    reparameterization noise, which uses the example key itself.
    """
    x = batch['image']
    if binarize == 'dynamic':
        bkeys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)
        x = jax.vmap(lambda k, p: jax.random.bernoulli(k, p).astype(p.dtype))(bkeys, x)
    return x, batch['label']


def train_step(state: TrainState, batch: Mapping[str, jax.Array], train_key: jax.Array, *,
               model: VAE, objective, model_config, binarize: str,
               axis_name: str | None = AXIS) -> tuple[TrainState, Mapping[str, jax.Array]]:
    """One optimizer step on this device's share of the global batch.

    Args:
      state: TrainState (replicated across devices).
      batch: {'image': [b, ...], 'label': [b], 'index': [b]} for this device.
      train_key: the run's training key (same on every device).
      model, objective, model_config, binarize: bound with functools.partial.
      axis_name: the device axis; gradients and metrics are `lax.pmean`-ed over it.

    Returns:
      (new state, metrics averaged over the global batch).
    """
    step_key = jax.random.fold_in(train_key, state.step)
    keys = example_keys(step_key, batch['index'])
    x, y = prepare_inputs(batch, keys, binarize)
    beta = objectives.beta_schedule(objective.beta, objective.kl_warmup_steps)(state.step)
    model_fns = dict(apply_fn=state.apply_fn, encode=model.encode, decode=model.decode,
                     likelihood=model_config.likelihood,
                     log_scale=jnp.log(model_config.gaussian_scale))
    if objective.name == 'iwae':  # β and free bits are ELBO-only (configs.validate enforces it)
        loss_fn = functools.partial(objectives.iwae_loss, num_samples=objective.num_samples,
                                    **model_fns)
    else:
        loss_fn = functools.partial(objectives.vae_loss, beta=beta,
                                    free_bits=objective.free_bits, axis_name=axis_name,
                                    **model_fns)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x, y, keys)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    metrics = dict(metrics, beta=beta, grad_norm=optax.global_norm(grads))
    return state.apply_gradients(grads=grads), metrics


def eval_step(params: Any, batch: Mapping[str, jax.Array], eval_key: jax.Array, *,
              model: VAE, model_config, binarize: str,
              axis_name: str | None = AXIS) -> Mapping[str, jax.Array]:
    """Sums of -ELBO, reconstruction and KL over the real (mask=1) examples of the global batch.

    The keys come from the example's position in the eval set (`batch['index']`), so the
    reported numbers are the same for any device count and batch size.
    """
    keys = example_keys(eval_key, batch['index'])
    x, y = prepare_inputs(batch, keys, binarize)
    t = objectives.elbo_terms(
        params, x, y, keys, apply_fn=model.apply, encode=model.encode, decode=model.decode,
        likelihood=model_config.likelihood, log_scale=jnp.log(model_config.gaussian_scale))
    m = {'neg_elbo': -t['log_lik'] + t['kl'], 'recon': -t['log_lik'], 'kl': t['kl']}
    mask = batch['mask']
    sums = {k: jnp.sum(v * mask) for k, v in m.items()}
    sums['count'] = jnp.sum(mask)
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def pmapped_steps(model: VAE, config, devices: Sequence[jax.Device], step_fn=train_step):
    """Returns (p_train_step, p_eval_step) pmapped over `devices` with axis name 'batch'.

    The state (argument 0) is donated: XLA reuses its buffers for the new state.
    """
    common = dict(model=model, model_config=config.model, binarize=config.data.binarize)
    p_train = jax.pmap(
        functools.partial(step_fn, objective=config.objective, **common),
        axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,), devices=devices)
    p_eval = jax.pmap(functools.partial(eval_step, **common), axis_name=AXIS,
                      in_axes=(0, 0, None), devices=devices)
    return p_train, p_eval


def replicate(tree: Any, devices: Sequence[jax.Device]) -> Any:
    """One copy of `tree` per device, laid out exactly as pmap lays out its outputs.

    flax.jax_utils.replicate places arrays with a different sharding than the one pmap (now
    built on shard_map) returns, so the second train step would retrace and recompile;
    passing the copies through a pmapped identity with the same axis name gives them the
    layout (a mesh over that axis) that the train step returns.
    """
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))),
                           tree)
    return _identity(tuple(devices))(stacked)


@functools.lru_cache
def _identity(devices: tuple[jax.Device, ...]):
    return jax.pmap(lambda t: t, axis_name=AXIS, devices=devices)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of each leaf: [n, ...] -> [...] (without a cross-device gather)."""
    return jax.tree.map(lambda x: x.addressable_data(0).reshape(x.shape[1:]), tree)
