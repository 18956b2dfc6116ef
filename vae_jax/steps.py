"""The train state, the pure train/eval steps, and their pmapped forms.

Randomness (`keys`): a step draws from `fold_in(train_key, step)` and each example from
`fold_in(step_key, i)` with i its *global* position in the batch (the data pipeline's 'index').
Nothing depends on the device count, so the same global batch gives the same numbers on 1, 2 or
8 devices, and a resumed run redraws exactly what it would have drawn.

The step knows no objective by name: it asks `objectives.get(config.objective.name)` for the
loss, the fields it reads, its traced hyperparameters and any auxiliary model.
"""

import functools
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from vae_jax import keys as keys_lib, objectives
from vae_jax.inits import params_and_opt_state
from vae_jax.distributed import pmap_devices
from vae_jax.model_fns import ModelFns
from vae_jax.objectives.core import Context
from vae_jax.optim import (apply_gradients, eval_params, global_norm, make_optimizer,
                           set_learning_rate, skipped_updates)

AXIS = 'batch'
LEARNING_RATE = 'optim.learning_rate'


class TrainState(train_state.TrainState):
    """flax's TrainState plus the objective's auxiliary model (`Objective.aux`), else None."""
    aux: Optional[train_state.TrainState] = None

    @property
    def eval_params(self) -> Any:
        """What evaluation and sampling use: the parameters' moving average when the optimizer
        keeps one (`optim.ema_decay`), else the parameters."""
        return eval_params(self.params, self.opt_state)

    def as_saved(self, fields: set) -> train_state.TrainState:
        """This state in the form of a checkpoint whose top-level fields are `fields`: a
        `TrainStateV1` for checkpoints written when the auxiliary model was FactorVAE's
        `discriminator`, so that those runs still resume (bit for bit)."""
        if 'discriminator' in fields and 'aux' not in fields:
            return TrainStateV1(step=self.step, apply_fn=self.apply_fn, params=self.params,
                                tx=self.tx, opt_state=self.opt_state, discriminator=self.aux)
        return self


class TrainStateV1(train_state.TrainState):
    """The TrainState of checkpoints written before objectives were a registry."""
    discriminator: Optional[train_state.TrainState] = None

    def current(self) -> TrainState:
        return TrainState(step=self.step, apply_fn=self.apply_fn, params=self.params,
                          tx=self.tx, opt_state=self.opt_state, aux=self.discriminator)


def create_train_state(key: jax.Array, fns: ModelFns, tx: optax.GradientTransformation,
                       example_shape: Sequence[int],
                       aux: Optional[train_state.TrainState] = None) -> TrainState:
    """Initialises parameters from `key` with a batch of one example of `example_shape`, and
    the optimizer's state, as one program (`inits.params_and_opt_state`)."""
    x = jnp.zeros((1, *example_shape), jnp.float32)
    y = jnp.zeros((1,), jnp.int32) if fns.conditional else None
    params, opt_state = params_and_opt_state(fns.module, tx, key, x, y)
    return TrainState(step=0, apply_fn=fns.module.apply, params=params, tx=tx,
                      opt_state=opt_state, aux=aux)  # as TrainState.create builds it


def init_train_state(key: jax.Array, fns: ModelFns, config, example_shape: Sequence[int],
                     total_steps: int) -> TrainState:
    """The initial state of a run of `config`: model, optimizer and auxiliary model."""
    objective = objectives.get(config.objective.name)
    aux = (objective.aux.init(jax.random.fold_in(key, keys_lib.DISCRIMINATOR), config)
           if objective.aux is not None else None)
    return create_train_state(key, fns, make_optimizer(config.optim, total_steps),
                              example_shape, aux)


def prepare_inputs(batch: Mapping[str, jax.Array], keys: jax.Array, binarize: str):
    """Returns (x [b, ...], y [b]); 'dynamic' binarization samples pixels ~ Bernoulli(x)
    with each example's `keys.binarize_keys`, so the same example of the same split is
    binarized the same way by every evaluation."""
    x = batch['image']
    if binarize == 'dynamic':  # a missing pixel (NaN, `data.train_missing`) stays missing
        x = jnp.where(jnp.isnan(x), x, keys_lib.binarize(keys, x))
    return x, batch['label']


def hparam_names(objective_config) -> tuple[str, ...]:
    """The dotted names of the step's traced hyperparameters: the objective's `traced` fields
    and the peak learning rate."""
    traced = objectives.get(objective_config.name).traced
    return tuple(f'objective.{f}' for f in traced) + (LEARNING_RATE,)


def get_field(config, key: str):
    """The value of the dotted field `key` ('objective.beta') of `config`."""
    for part in key.split('.'):
        config = config[part]
    return config


def hyperparams(config) -> dict[str, jax.Array]:
    """{name: [] float32} for every name in `hparam_names`: the `hparams` argument of
    `train_step`."""
    return {k: jnp.asarray(get_field(config, k), jnp.float32)
            for k in hparam_names(config.objective)}


def settings(objective_config, hparams: Mapping[str, jax.Array]) -> dict:
    """{field: value} of the objective's fields: traced ones from `hparams`, the rest from the
    config."""
    fields = objectives.get(objective_config.name).defaults
    return {f: hparams.get(f'objective.{f}', objective_config[f]) for f in fields}


def train_step(state: TrainState, batch: Mapping[str, jax.Array], train_key: jax.Array,
               hparams: Mapping[str, jax.Array], *, fns: ModelFns, objective_config,
               binarize: str, axis_name: str | None = AXIS, lead_axis: bool = True
               ) -> tuple[TrainState, Mapping[str, jax.Array]]:
    """One optimizer step on this device's share of the global batch.

    Args:
      state: TrainState (replicated across devices).
      batch: {'image': [b, ...], 'label': [b], 'index': [b]} for this device.
      train_key: the run's training key (same on every device).
      hparams: {name: [] value} for every name in `hparam_names` (`hyperparams(config)`):
        the objective's traced fields and the peak learning rate, as traced data.
      fns, objective_config, binarize: bound with functools.partial.
      axis_name: the device axis; gradients and metrics are `lax.pmean`-ed over it.
      lead_axis: `optim.apply_gradients`'s: True (the update in place, under pmap and vmap) or
        False (flax's update; for comparisons).

    Returns:
      (new state, metrics averaged over the global batch).
    """
    objective = objectives.get(objective_config.name)
    keys = keys_lib.example_keys(jax.random.fold_in(train_key, state.step), batch['index'])
    x, y = prepare_inputs(batch, keys, binarize)
    ctx = Context(fns=fns, settings=settings(objective_config, hparams), step=state.step,
                  axis_name=axis_name, aux=state.aux)
    grads, (metrics, aux_input) = jax.grad(objective.loss, has_aux=True)(
        state.params, x, y, keys, ctx)
    if objective.aux is not None:
        aux_grads, aux_metrics = objective.aux.grads(
            state.aux, aux_input, keys_lib.permutation_key(train_key, state.step), axis_name)
        state = state.replace(aux=apply_gradients(state.aux, aux_grads, lead_axis))
        metrics = dict(metrics, **aux_metrics)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    metrics = dict(metrics, grad_norm=global_norm(grads))
    state = state.replace(opt_state=set_learning_rate(state.opt_state, hparams[LEARNING_RATE]))
    state = apply_gradients(state, grads, lead_axis)
    skipped = skipped_updates(state.opt_state)
    if skipped is not None:
        metrics['skipped_updates'] = skipped.astype(jnp.float32)
    return state, metrics


def eval_step(params: Any, batch: Mapping[str, jax.Array], eval_key: jax.Array, *,
              fns: ModelFns, binarize: str,
              axis_name: str | None = AXIS) -> Mapping[str, jax.Array]:
    """Sums of -ELBO, reconstruction and KL over the real (mask=1) examples of the global batch.

    The keys come from the example's position in the eval set (`batch['index']`), so the
    reported numbers are the same for any device count and batch size.
    """
    keys = keys_lib.example_keys(eval_key, batch['index'])
    x, y = prepare_inputs(batch, keys, binarize)
    t = objectives.elbo_terms(params, x, y, keys, fns)
    m = {'neg_elbo': -t['log_lik'] + t['kl'], 'recon': -t['log_lik'], 'kl': t['kl']}
    mask = batch['mask']
    sums = {k: jnp.sum(v * mask) for k, v in m.items()}
    sums['count'] = jnp.sum(mask)
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def pmapped_steps(fns: ModelFns, config, devices: Sequence[jax.Device], step_fn=train_step,
                  vmapped: bool = False):
    """Returns (p_train_step, p_eval_step) pmapped over `devices` with axis name 'batch'.

    p_train(state, batch, train_key, hparams) and p_eval(params, batch, eval_key). With
    `vmapped`, every argument has a leading axis of P points (a sweep group: state leaves
    [devices, P, ...], batch [devices, P, b, ...], keys and hparams [P]) and one compiled step
    trains all of them. The state (argument 0) is donated: XLA reuses its buffers (updating it
    in place, `optim.apply_gradients`).
    """
    devices, train, evaluate = _bodies(fns, config, devices, step_fn, vmapped)
    return _pmap_train(train, devices), jax.pmap(evaluate, axis_name=AXIS, in_axes=(0, 0, None),
                                                 devices=devices)


def pmapped_multi_step(fns: ModelFns, config, devices: Sequence[jax.Device], step_fn=train_step,
                       vmapped: bool = False):
    """p_train_k(state, batches, train_key, hparams): the train step of `pmapped_steps` run
    over each of K batches in turn, in one call (`lax.scan`; K is the batches' second axis).

    batches: [devices, K, b, ...] ([devices, K, P, b, ...] when vmapped). Returns (the state
    after the K steps, metrics [devices, K] ([devices, K, P])). The same arithmetic as K calls
    of p_train up to float rounding (XLA fuses the scanned step differently); it saves each
    call's fixed cost (launching the executable, waking XLA:CPU's threads), a noticeable share
    of a small step: 1.08× faster steps for the main job's MLP at batch 128, 1.20× at batch 20
    on a 2-core CPU (`python benchmarks/steps_per_execution.py`). On CPU, a step with
    convolutions is unrolled instead of looped (see `has_convolution`).
    """
    devices, train, _ = _bodies(fns, config, devices, step_fn, vmapped)

    def train_k(state, batches, train_key, hparams):
        body = lambda s, batch: train(s, batch, train_key, hparams)  # noqa: E731
        batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), batches)
        unroll = devices[0].platform == 'cpu' and has_convolution(body, state, batch)
        return jax.lax.scan(body, state, batches, unroll=unroll)

    return _pmap_train(train_k, devices)


def has_convolution(f, *args) -> bool:
    """Whether f(*args) computes a convolution (its jaxpr, nested ones included, has a
    `conv_general_dilated`). Traces f once on the arguments' shapes (arrays, tracers or
    ShapeDtypeStructs); nothing is added to an enclosing trace.

    On CPU, `pmapped_multi_step` unrolls the scan of such a step: inside a loop body XLA:CPU
    leaves the convolutions that autodiff's transposes produce (the weight and input
    gradients) in their transposed dimension orders and runs them without its optimised
    kernels, so a rolled scan of the conv β-VAE's step ran 0.6 steps/s against 23.2 one step
    per call (`python benchmarks/train_speed.py --models conv --quick --steps_per_execution
    10`, a 2-core CPU); one layer's weight gradient took 126 ms per iteration in a scan
    against 5.5 alone (a one-off script, 2026-12-04). Unrolled, no convolution of the K steps is inside a loop.
    """
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    return _uses(jax.make_jaxpr(f)(*shapes).jaxpr, 'conv_general_dilated')


def _uses(jaxpr, primitive: str) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, 'jaxpr', sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, 'eqns') and _uses(sub, primitive):
                    return True
    return False


def _bodies(fns, config, devices, step_fn, vmapped):
    """(devices, train body, eval body) for pmap: the config's fields bound, vmapped if asked."""
    devices = pmap_devices(devices)  # with several processes: all of theirs, for global pmeans
    # Over one device every collective is the identity, yet XLA:CPU still runs it as an
    # all-reduce: the bodies then get axis_name=None and skip them, bit for bit.
    axis = AXIS if len(devices) > 1 else None
    train = functools.partial(step_fn, fns=fns, objective_config=config.objective,
                              binarize=config.data.binarize, axis_name=axis)
    evaluate = functools.partial(eval_step, fns=fns, binarize=config.data.binarize,
                                 axis_name=axis)
    if vmapped:
        train, evaluate = jax.vmap(train), jax.vmap(evaluate)
    return devices, train, evaluate


def _pmap_train(train, devices):
    return jax.pmap(train, axis_name=AXIS, in_axes=(0, 0, None, None), donate_argnums=(0,),
                    devices=devices)


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
