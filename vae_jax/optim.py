"""The optimizer a `config.optim` describes: optax, with the peak learning rate injected.

`OPTIMIZERS` and `SCHEDULES` are the registries `config.optim.name` and `config.optim.schedule`
pick from.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax import custom_batching

# config.optim.name -> (learning-rate schedule, config.optim) -> optax transformation.
OPTIMIZERS = {
    'adam': lambda lr, c: optax.adam(lr, eps=c.eps),
    'adamw': lambda lr, c: optax.adamw(lr, eps=c.eps, weight_decay=c.weight_decay),
    'sgd': lambda lr, c: optax.sgd(lr, momentum=0.9),
}

# config.optim.schedule -> (config.optim, total steps) -> the schedule's shape, peaking at 1.
SCHEDULES = {
    'constant': lambda c, total: optax.constant_schedule(1.0),
    'cosine': lambda c, total: optax.cosine_decay_schedule(1.0, max(total, 1)),
    'warmup_cosine': lambda c, total: optax.warmup_cosine_decay_schedule(
        0.0, 1.0, c.warmup_steps, max(total, c.warmup_steps + 1)),
    'burda': lambda c, total: burda_schedule(total),
    'piecewise': lambda c, total: optax.piecewise_constant_schedule(
        1.0, {round(f * total): c.decay for f in c.boundaries if 0 < round(f * total) < total}),
}


def burda_schedule(total_steps: int, stages: int = 8) -> optax.Schedule:
    """Burda et al. (2015, §5): stage i = 0..7 lasts 3^i epochs at 10^(-i/7) times the peak
    learning rate, 3,280 epochs in all. Here the stages take the same fractions of
    `total_steps`, so with `num_epochs=3280` it is their schedule exactly."""
    lengths = [3**i for i in range(stages)]
    ends = [round(total_steps * sum(lengths[:i + 1]) / sum(lengths)) for i in range(stages)]
    return optax.piecewise_constant_schedule(
        1.0, {end: 10 ** (-1 / 7) for end in ends[:-1] if 0 < end < total_steps})


def unit_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule's shape, peaking at 1; the learning rate multiplies it."""
    return SCHEDULES[optim_config.schedule](optim_config, total_steps)


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
        opt = OPTIMIZERS[c.name](lambda count: learning_rate * unit(count), c)
        if c.grad_clip > 0:
            opt = optax.chain(optax.clip_by_global_norm(c.grad_clip), opt)
        if c.skip_threshold > 0:
            opt = skip_large_updates(opt, c.skip_threshold, c.skip_max_consecutive)
        if c.ema_decay > 0:
            opt = optax.chain(opt, params_ema(c.ema_decay))
        return opt
    return optax.inject_hyperparams(build)(learning_rate=c.learning_rate)


# `global_norm`: leaves with fewer elements than this are summed together, in one pass.
SMALL_LEAF = 16384
# Each sum runs over blocks of 32 x 32 elements, the last one zero-padded (blocks of 8 x 8 were
# slower in the MLP step: 2.75 against 2.56 ms in one one-off alternating run, not a benchmark).
_BLOCK = 32


def global_norm(tree) -> jax.Array:
    """[] float: the square root of the sum of every (real) leaf's squared elements.

    `optax.global_norm`'s value, up to the order of the float sums, written for XLA:CPU. Inside
    a train step optax's form shares its squares `g * g` with Adam's second-moment update, so
    XLA writes the squares out as an array of each gradient's size and reduces it in a separate
    pass, one per leaf. Here each large leaf is zero-padded by 1 to 1024 elements, to whole
    32 x 32 blocks, before it is squared (the padding keeps the two squares apart, and XLA:CPU
    fuses the square into the sum: one read of the gradient, nothing written), and the small
    leaves (biases) of each dtype are concatenated and summed together, which spares one small
    program per leaf. In the main job's compiled step (`experiments/vae.py`, batch 128) XLA:CPU
    then writes 5,744,040 f32 elements per step instead of 6,548,945; its steps take 2.51 ms
    instead of 2.68 (1.06×; 1.08× and 1.11× in two earlier runs), the HVAE's (batch 20) 1.19
    instead of 1.59 (1.34×; 1.38×, 1.28×), about as fast as without any norm; the conv
    β-VAE's 42.0 instead of 42.7 (1.02×, within the noise) (`python benchmarks/grad_norm.py`,
    15 rotating rounds, 2026-12-03, a 2-core AMD EPYC VM).
    `optax.clip_by_global_norm` (`optim.grad_clip`, which no experiment sets) computes its own.
    """
    leaves = [jnp.ravel(x) for x in jax.tree.leaves(tree)]
    groups = [x for x in leaves if x.size >= SMALL_LEAF]
    small = {}
    for x in leaves:
        if x.size < SMALL_LEAF:
            small.setdefault(x.dtype, []).append(x)
    groups += [jnp.concatenate(xs) for xs in small.values()]
    if not groups:
        return jnp.zeros([], jnp.float32)
    return jnp.sqrt(sum(_sum_of_squares(x) for x in groups))


def _sum_of_squares(x: jax.Array) -> jax.Array:
    """[n] -> []: the sum of x's squares, over blocks of _BLOCK x _BLOCK; the last block is
    zero-padded, by a whole block when n fills its blocks (a pad of 0 would be removed)."""
    size = _BLOCK * _BLOCK
    padded = jnp.pad(x, (0, size - x.size % size)).reshape(-1, _BLOCK, _BLOCK)
    return jnp.sum(padded * padded)


class SkipState(NamedTuple):
    inner: Any
    consecutive: jax.Array  # [] int32: updates skipped since the last one applied
    skipped: jax.Array      # [] int32: updates skipped in the whole run


def skip_large_updates(inner: optax.GradientTransformation, threshold: float,
                       max_consecutive: int) -> optax.GradientTransformation:
    """`inner`, except that a step whose gradient norm exceeds `threshold` is skipped: no
    update, and `inner`'s state (moments, step count) left as it was (VDVAE's
    `skip_threshold`).

    It cannot skip forever: after `max_consecutive` skips in a row, the next large gradient is
    applied, rescaled to norm `threshold`. A non-finite gradient is always skipped (it cannot be
    applied); a run whose loss is non-finite is stopped by the training loop's NaN check.
    """
    def init(params):
        zero = jnp.zeros([], jnp.int32)
        return SkipState(inner.init(params), zero, zero)

    def update(grads, state, params=None):
        norm = global_norm(grads)
        finite = jnp.isfinite(norm)
        large = norm > threshold
        skip = ~finite | (large & (state.consecutive < max_consecutive))
        scale = jnp.where(large & finite, threshold / jnp.where(finite, norm, 1.0), 1.0)
        updates, inner_state = inner.update(jax.tree.map(lambda g: g * scale, grads),
                                            state.inner, params)
        updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), updates)
        inner_state = jax.tree.map(lambda new, old: jnp.where(skip, old, new), inner_state,
                                   state.inner)
        skip = skip.astype(jnp.int32)
        return updates, SkipState(inner_state, (state.consecutive + 1) * skip,
                                  state.skipped + skip)

    return optax.GradientTransformation(init, update)


class EmaState(NamedTuple):
    params: Any      # the moving average of the parameters, same tree
    count: jax.Array  # [] int32: updates averaged so far


def params_ema(decay: float) -> optax.GradientTransformation:
    """Keeps ema <- d_t * ema + (1 - d_t) * (params + updates): the average of the parameters
    *after* each step, with d_t = min(decay, (1 + t) / (10 + t)) at update t so that the
    average follows the first steps instead of staying near the initial parameters (the
    warm-up of TensorFlow's ExponentialMovingAverage with `num_updates`). Last in a chain, it
    passes the updates through unchanged."""
    def init(params):
        return EmaState(jax.tree.map(jnp.asarray, params), jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        t = state.count.astype(jnp.float32)
        d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        ema = jax.tree.map(lambda e, p, u: d * e + (1 - d) * (p + u),
                           state.params, params, updates)
        return updates, EmaState(ema, state.count + 1)

    return optax.GradientTransformation(init, update)


def _find(opt_state, cls) -> Optional[Any]:
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, cls))
             if isinstance(s, cls)]
    return found[0] if found else None


def eval_params(params, opt_state):
    """The parameters to evaluate and sample with: the moving average when the optimizer keeps
    one (`optim.ema_decay > 0`), else `params`."""
    ema = _find(opt_state, EmaState)
    return params if ema is None else ema.params


def skipped_updates(opt_state) -> Optional[jax.Array]:
    """How many updates `skip_large_updates` has skipped so far, or None without it."""
    state = _find(opt_state, SkipState)
    return None if state is None else state.skipped


def apply_gradients(state, grads, lead_axis: bool = True):
    """`state.apply_gradients(grads=grads)` (flax's TrainState: one optimizer update), by
    default computed on leaves given a leading axis of 1.

    Under pmap each leaf of a donated state is the device's [1, ...] slice, which the step body
    sees as [...]. XLA:CPU writes an update into its donated buffer in place only when the
    fusion that computes it has the buffer's own shape: computed on [...], each parameter and
    both its Adam moments were copied once per step. On [1, ...] leaves the reshapes cancel
    against pmap's and nothing is copied: the MLP train step 5.63 -> 4.89 ms, the HVAE's 2.86 ->
    2.59 ms (`python benchmarks/optimizer_update.py`, 2-core Intel Xeon). The same operations on
    the same values; XLA's generated loops may round the Adam moments differently by an ulp.

    Under vmap (a sweep group's step: the body's leaves are [P, ...], the device's [1, P, ...])
    the update is computed on [1, P, ...] leaves, vmapped over their second axis
    (`_group_update`), for the same reason. `lead_axis=False` applies flax's update as it is.
    """
    if not lead_axis:
        return state.apply_gradients(grads=grads)
    return _lead_axis_update(state, grads)


def _update(state, grads):
    """flax's `TrainState.apply_gradients`, on leaves of any layout."""
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state)


@custom_batching.custom_vmap
def _lead_axis_update(state, grads):
    def lead(tree):  # scalars (the step count, the learning rate) stay scalars
        return jax.tree.map(lambda a: a[None] if jnp.ndim(a) else a, tree)

    def strip(tree, like):
        return jax.tree.map(lambda a, b: a[0] if jnp.ndim(b) else a, tree, like)

    new = _update(lead(state), lead(grads))
    return strip(new, state)


@_lead_axis_update.def_vmap
def _group_update(axis_size, in_batched, state, grads):
    """The update of P points' stacked states: leaves [P, ...] (a point's scalars [P]) become
    [1, P, ...] and the update is vmapped over axis 1, so that its fusions write arrays of the
    donated buffers' own shape: a group of 8 flax-parity MLPs copies 7 parameter-sized arrays
    per step instead of 21 (`python benchmarks/optimizer_update.py --models group:mlp`)."""
    def batched(tree, flags):
        return jax.tree.map(lambda a, b: a if b else jnp.broadcast_to(a, (axis_size, *a.shape)),
                            tree, flags)

    state, grads = batched(state, in_batched[0]), batched(grads, in_batched[1])
    lead = lambda tree: jax.tree.map(lambda a: a[None] if a.ndim > 1 else a, tree)
    axes = lambda tree: jax.tree.map(lambda a: 1 if a.ndim > 1 else 0, tree)
    new = jax.vmap(_update, in_axes=(axes(state), axes(grads)), out_axes=axes(state))(
        lead(state), lead(grads))
    new = jax.tree.map(lambda a, b: a[0] if b.ndim > 1 else a, new, state)
    return new, jax.tree.map(lambda _: True, new)


def set_learning_rate(opt_state, learning_rate: jax.Array):
    """`make_optimizer`'s state with its peak learning rate replaced by `learning_rate` []."""
    hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(
        learning_rate, opt_state.hyperparams['learning_rate'].dtype))
    return opt_state._replace(hyperparams=hyperparams)
