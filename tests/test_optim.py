"""optim.apply_gradients: flax's optimizer update, computed on [1, ...] leaves so that XLA updates
a pmapped state's buffers in place."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state

from vae_jax import base_config, model_fns, optim, steps


def _state(optim_config, key=0):
    k1, k2 = jax.random.split(jax.random.key(key))
    params = {'w': jax.random.normal(k1, (6, 5)), 'b': jax.random.normal(k2, (5,))}
    tx = optim.make_optimizer(optim_config, total_steps=10)
    return train_state.TrainState.create(apply_fn=None, params=params, tx=tx)


def _optim_configs():
    adam = base_config().optim
    rich = base_config().optim  # every wrapper: clipping, skipping, moving average, a schedule
    rich.grad_clip, rich.skip_threshold, rich.ema_decay, rich.schedule = 5.0, 50.0, 0.9, 'cosine'
    sgd = base_config().optim
    sgd.name = 'sgd'
    return adam, rich, sgd


def test_apply_gradients_is_flaxs_update_to_float_rounding():
    for c in _optim_configs():
        ours = ref = _state(c)
        for i in range(4):
            scale = 100.0 if i == 2 else 1.0  # one large gradient: skipped by `rich`
            grads = jax.tree.map(lambda p: scale * jnp.sin(p * (i + 1)), ours.params)
            ours = jax.jit(optim.apply_gradients)(ours, grads)
            ref = jax.jit(lambda s, g: s.apply_gradients(grads=g))(ref, grads)
        assert jax.tree.structure(ours) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            assert a.shape == b.shape and a.dtype == b.dtype  # scalars (the count) stay scalars
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
        assert int(ours.step) == 4


def test_lead_axis_false_is_flaxs_update_bit_for_bit():
    state = _state(_optim_configs()[1])
    grads = jax.tree.map(jnp.cos, state.params)
    ours = optim.apply_gradients(state, grads, lead_axis=False)
    ref = state.apply_gradients(grads=grads)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)


def _copied_state_leaves(lead_axis):
    """Paths of the state's leaves (of at least 1,000 elements) that the compiled one-device
    pmapped train step copies before updating."""
    config = base_config()
    config.model.hidden = (64,)
    fns = model_fns.build(config.model, (28, 28, 1), 10)
    state = steps.init_train_state(jax.random.key(0), fns, config, (28, 28, 1), 100)
    devices = jax.devices()[:1]
    step_fn = lambda *a, **k: steps.train_step(*a, **dict(k, lead_axis=lead_axis))
    p_train, _ = steps.pmapped_steps(fns, config, devices, step_fn=step_fn)
    state = steps.replicate(state, devices)
    batch = {'image': np.zeros((1, 8, 28, 28, 1), np.float32),
             'label': np.zeros((1, 8), np.int32), 'index': np.arange(8, dtype=np.int32)[None]}
    text = p_train.lower(state, batch, jax.random.key(1),
                         steps.hyperparams(config)).compile().as_text()
    copied = {int(i) for i in re.findall(r'copy\(%flat_args_(\d+)_', text)}
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    sizes = [x.size for x in jax.tree.leaves(state)]
    return [paths[i] for i in sorted(copied) if i < len(paths) and sizes[i] >= 1000]


def test_pmapped_step_updates_adam_moments_in_place():
    """The mechanism apply_gradients exists for: computed on the body's [...] leaves, XLA:CPU
    copies Adam's moments every step; on [1, ...] leaves it updates them in place."""
    moments = lambda paths: [p for p in paths if '.mu' in p or '.nu' in p]
    assert moments(_copied_state_leaves(lead_axis=False))  # the copies the layout avoids
    assert moments(_copied_state_leaves(lead_axis=True)) == []
