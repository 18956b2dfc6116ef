"""The optimizer a `config.optim` describes: optax, with the peak learning rate injected.

`OPTIMIZERS` and `SCHEDULES` are the registries `config.optim.name` and `config.optim.schedule`
pick from.
"""

import jax
import jax.numpy as jnp
import optax

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
        return opt
    return optax.inject_hyperparams(build)(learning_rate=c.learning_rate)


def set_learning_rate(opt_state, learning_rate: jax.Array):
    """`make_optimizer`'s state with its peak learning rate replaced by `learning_rate` []."""
    hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(
        learning_rate, opt_state.hyperparams['learning_rate'].dtype))
    return opt_state._replace(hyperparams=hyperparams)
