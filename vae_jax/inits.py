"""Initialisations of dense layers by name (`model.init`), as the papers' code initialises them.

    nn.Dense(width, **dense_init(name, fan_in))

- 'lecun': flax's default (LeCun normal weights, zero biases); passes nothing.
- 'torch': PyTorch's nn.Linear default: weights and biases ~ U(±1/√fan_in).
- 'he': weights ~ N(0, 2/fan_in) (the VampPrior code's `he_init`), biases as 'torch'.
- 'glorot': weights ~ U(±√(6/(fan_in + fan_out))), zero biases (Burda et al.'s IWAE code).

The parameter tree does not depend on the choice, so a checkpoint is the same shape under any.

`params_and_opt_state` initialises a module and its optimizer's state as one jitted program.
"""

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

NAMES = ('lecun', 'torch', 'he', 'glorot')


def _uniform_bias(fan_in: int):
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def dense_init(name: str, fan_in: int) -> dict:
    """kernel_init and bias_init keyword arguments of nn.Dense for the initialisation `name`."""
    if name == 'lecun':
        return {}
    if name == 'torch':
        return dict(kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
                    bias_init=_uniform_bias(fan_in))
    if name == 'he':
        return dict(kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in',
                                                                 'normal'),
                    bias_init=_uniform_bias(fan_in))
    if name == 'glorot':
        return dict(kernel_init=nn.initializers.glorot_uniform())
    raise ValueError(f'unknown initialisation {name!r}; choose one of {", ".join(NAMES)}')


def params_and_opt_state(module: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                         *inputs) -> tuple:
    """(params, tx.init(params)) of `module` initialised from `key` on example `inputs`.

    Under one `jit`: one program traced, lowered and read back from the compilation cache,
    instead of one small program per initializer op as flax's and optax's eager init run them;
    on XLA:CPU the same values bit for bit (`tests/test_steps.py`). With warm caches the conv
    β-VAE's train state takes 0.45 s instead of 1.25, the MLP's 0.16 instead of 0.51 (`python
    benchmarks/init_speed.py`, 2026-12-03, a 2-core AMD EPYC VM).
    """
    def create(key, *inputs):
        params = module.init(key, *inputs)['params']
        return params, tx.init(params)
    return jax.jit(create)(key, *inputs)
