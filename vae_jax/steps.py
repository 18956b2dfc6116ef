"""The train state, the pure train/eval steps, and their pmapped forms.

Randomness: `train_key = fold_in(seed_key, 1)`; a step draws from `fold_in(train_key, step)` and
each example from `fold_in(step_key, i)` with i its *global* position in the batch (the data
pipeline's 'index'). Nothing depends on the device count, so the same global batch gives the
same numbers on 1, 2 or 8 devices, and a resumed run redraws exactly what it would have drawn.
"""

import functools
import types
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from vae_jax import objectives, regularizers
from vae_jax.distributed import pmap_devices
from vae_jax.models import VAE, Discriminator

AXIS = 'batch'
# fold_in(train_key, PERMUTATION) then the step: FactorVAE's permutation keys, disjoint from
# the step keys fold_in(train_key, step) for any step a run can reach.
PERMUTATION = 2**32 - 1


class TrainState(train_state.TrainState):
    """flax's TrainState plus FactorVAE's discriminator state (None for other objectives)."""
    discriminator: Optional[train_state.TrainState] = None


def unit_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule's shape, peaking at 1; the learning rate multiplies it."""
    c = optim_config
    if c.schedule == 'constant':
        return optax.constant_schedule(1.0)
    if c.schedule == 'cosine':
        return optax.cosine_decay_schedule(1.0, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, c.warmup_steps,
                                              max(total_steps, c.warmup_steps + 1))


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """optax optimizer with the configured schedule and optional global-norm clipping.

    The peak learning rate is an `optax.inject_hyperparams` hyperparameter: it lives in the
    optimizer state (`opt_state.hyperparams['learning_rate']`) as an array, so a train step can
    set it from its traced `hparams` (`set_learning_rate`) and a vmapped group of sweep points
    gives each point its own without recompiling.
    """
    c = optim_config
    unit = unit_schedule(c, total_steps)

    def build(learning_rate):
        lr = lambda count: learning_rate * unit(count)
        if c.name == 'adam':
            opt = optax.adam(lr)
        elif c.name == 'adamw':
            opt = optax.adamw(lr, weight_decay=c.weight_decay)
        else:
            opt = optax.sgd(lr, momentum=0.9)
        if c.grad_clip > 0:
            opt = optax.chain(optax.clip_by_global_norm(c.grad_clip), opt)
        return opt
    return optax.inject_hyperparams(build)(learning_rate=c.learning_rate)


def set_learning_rate(opt_state, learning_rate: jax.Array):
    """`make_optimizer`'s state with its peak learning rate replaced by `learning_rate` []."""
    hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(
        learning_rate, opt_state.hyperparams['learning_rate'].dtype))
    return opt_state._replace(hyperparams=hyperparams)


def create_train_state(key: jax.Array, model: VAE, tx: optax.GradientTransformation,
                       example_shape: Sequence[int],
                       discriminator: Optional[train_state.TrainState] = None) -> TrainState:
    """Initialises parameters from `key` with a batch of one example of `example_shape`."""
    x = jnp.zeros((1, *example_shape), jnp.float32)
    y = jnp.zeros((1,), jnp.int32)
    params = model.init(key, x, y)['params']
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                             discriminator=discriminator)


def make_discriminator(key: jax.Array, config) -> Optional[train_state.TrainState]:
    """FactorVAE's discriminator and its own Adam (None unless objective.name='factor_vae')."""
    if config.objective.name != 'factor_vae':
        return None
    c = config.discriminator
    module = Discriminator(tuple(c.hidden))
    params = module.init(key, jnp.zeros((1, config.model.latents), jnp.float32))['params']
    return train_state.TrainState.create(
        apply_fn=module.apply, params=params, tx=optax.adam(c.learning_rate, b1=c.b1, b2=c.b2))


def init_train_state(key: jax.Array, model: VAE, config, example_shape: Sequence[int],
                     total_steps: int) -> TrainState:
    """The initial state of a run of `config`: model, optimizer and (FactorVAE) discriminator."""
    return create_train_state(key, model, make_optimizer(config.optim, total_steps),
                              example_shape, make_discriminator(jax.random.fold_in(key, 1), config))


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


def loss_function(objective, step: jax.Array, axis_name: Optional[str], model_fns: dict):
    """The objective's loss as a function of (params, x, y, keys) -> (loss, metrics)."""
    o = objective
    if o.name == 'iwae':  # β and free bits are ELBO-only (configs.validate enforces it)
        return functools.partial(objectives.iwae_loss, num_samples=o.num_samples, **model_fns)
    if o.name == 'capacity':
        return functools.partial(regularizers.capacity_loss, step=step, gamma=o.gamma,
                                 capacity_max=o.capacity_max, capacity_steps=o.capacity_steps,
                                 axis_name=axis_name, **model_fns)
    if o.name == 'beta_tcvae':
        return functools.partial(regularizers.beta_tcvae_loss, beta=o.beta,
                                 axis_name=axis_name, **model_fns)
    if o.name == 'dip_vae':
        return functools.partial(regularizers.dip_vae_loss, dip_type=o.dip_type,
                                 lambda_od=o.lambda_od, lambda_d=o.lambda_d,
                                 axis_name=axis_name, **model_fns)
    beta = objectives.beta_schedule(o.beta, o.kl_warmup_steps)(step)
    loss_fn = functools.partial(objectives.vae_loss, beta=beta, free_bits=o.free_bits,
                                axis_name=axis_name, **model_fns)
    return lambda *args: _with(loss_fn(*args), beta=beta)


def _with(loss_and_metrics, **extra):
    loss, metrics = loss_and_metrics
    return loss, dict(metrics, **extra)


# The scalar hyperparameters a train step takes as traced data (`hparams`), not as constants:
# changing one does not recompile the step, and a vmapped sweep group maps over them.
HPARAMS = ('objective.beta', 'objective.gamma', 'objective.capacity_max', 'objective.lambda_od',
           'objective.lambda_d', 'optim.learning_rate')


def get_field(config, key: str):
    """The value of the dotted field `key` ('objective.beta') of `config`."""
    for part in key.split('.'):
        config = config[part]
    return config


def hyperparams(config) -> dict[str, jax.Array]:
    """{name: [] float32} for every name in HPARAMS: the `hparams` argument of `train_step`."""
    return {k: jnp.asarray(get_field(config, k), jnp.float32) for k in HPARAMS}


def with_hparams(objective, hparams: Mapping[str, jax.Array]):
    """`objective` with its fields named in `hparams` ('objective.beta': []) replaced."""
    values = {k.split('.', 1)[1]: v for k, v in hparams.items() if k.startswith('objective.')}
    return types.SimpleNamespace(**dict(objective.items(), **values))


def train_step(state: TrainState, batch: Mapping[str, jax.Array], train_key: jax.Array,
               hparams: Mapping[str, jax.Array], *, model: VAE, objective, model_config,
               binarize: str, axis_name: str | None = AXIS
               ) -> tuple[TrainState, Mapping[str, jax.Array]]:
    """One optimizer step on this device's share of the global batch.

    Args:
      state: TrainState (replicated across devices).
      batch: {'image': [b, ...], 'label': [b], 'index': [b]} for this device.
      train_key: the run's training key (same on every device).
      hparams: {name: [] value} for every name in HPARAMS (`hyperparams(config)`): the
        objective's weights and the peak learning rate, as traced data.
      model, objective, model_config, binarize: bound with functools.partial; the objective's
        fields named in HPARAMS are taken from `hparams`, not from `objective`.
      axis_name: the device axis; gradients and metrics are `lax.pmean`-ed over it.

    Returns:
      (new state, metrics averaged over the global batch).
    """
    objective = with_hparams(objective, hparams)
    step_key = jax.random.fold_in(train_key, state.step)
    keys = example_keys(step_key, batch['index'])
    x, y = prepare_inputs(batch, keys, binarize)
    model_fns = dict(apply_fn=state.apply_fn, encode=model.encode, decode=model.decode,
                     likelihood=model_config.likelihood,
                     log_scale=jnp.log(model_config.gaussian_scale))
    if objective.name == 'factor_vae':
        disc = state.discriminator
        loss_fn = functools.partial(
            regularizers.factor_vae_loss, gamma=objective.gamma,
            discriminate=lambda z: disc.apply_fn({'params': disc.params}, z), **model_fns)
        grads, (metrics, z) = jax.grad(loss_fn, has_aux=True)(state.params, x, y, keys)
        perm_key = jax.random.fold_in(jax.random.fold_in(train_key, PERMUTATION), state.step)
        disc, disc_metrics = discriminator_step(disc, z, perm_key, axis_name)
        state = state.replace(discriminator=disc)
        metrics = dict(metrics, **disc_metrics)
    else:
        loss_fn = loss_function(objective, state.step, axis_name, model_fns)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, x, y, keys)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    metrics = dict(metrics, grad_norm=optax.global_norm(grads))
    state = state.replace(opt_state=set_learning_rate(state.opt_state,
                                                      hparams['optim.learning_rate']))
    return state.apply_gradients(grads=grads), metrics


def discriminator_step(disc: train_state.TrainState, z: jax.Array, perm_key: jax.Array,
                       axis_name: Optional[str]):
    """One update of FactorVAE's discriminator on z [b, d] ~ q(z|x) and its global permutation.

    z is the VAE step's sample (taken before the VAE update, as in Kim & Mnih's algorithm 1)
    with its gradient stopped.

    Returns:
      (new discriminator state, {'disc_loss', 'disc_accuracy'} over the global batch).
    """
    z = jax.lax.stop_gradient(z)
    permuted = regularizers.local_permuted(perm_key, z, axis_name)

    def loss_fn(params):
        real = disc.apply_fn({'params': params}, z)
        fake = disc.apply_fn({'params': params}, permuted)
        accuracy = 0.5 * (jnp.mean(jnp.argmax(real, -1) == 0) + jnp.mean(jnp.argmax(fake, -1) == 1))
        return regularizers.discriminator_loss(real, fake), accuracy

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc.params)
    metrics = {'disc_loss': loss, 'disc_accuracy': accuracy}
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    return disc.apply_gradients(grads=grads), metrics


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


def pmapped_steps(model: VAE, config, devices: Sequence[jax.Device], step_fn=train_step,
                  vmapped: bool = False):
    """Returns (p_train_step, p_eval_step) pmapped over `devices` with axis name 'batch'.

    p_train(state, batch, train_key, hparams) and p_eval(params, batch, eval_key). With
    `vmapped`, every argument has a leading axis of P points (a sweep group: state leaves
    [devices, P, ...], batch [devices, P, b, ...], keys and hparams [P]) and one compiled step
    trains all of them. The state (argument 0) is donated: XLA reuses its buffers.
    """
    common = dict(model=model, model_config=config.model, binarize=config.data.binarize)
    devices = pmap_devices(devices)  # with several processes: all of theirs, for global pmeans
    train = functools.partial(step_fn, objective=config.objective, **common)
    evaluate = functools.partial(eval_step, **common)
    if vmapped:
        train, evaluate = jax.vmap(train), jax.vmap(evaluate)
    p_train = jax.pmap(train, axis_name=AXIS, in_axes=(0, 0, None, None), donate_argnums=(0,),
                       devices=devices)
    p_eval = jax.pmap(evaluate, axis_name=AXIS, in_axes=(0, 0, None), devices=devices)
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
