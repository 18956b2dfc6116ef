"""optim.apply_gradients: flax's optimizer update, computed on [1, ...] leaves (a sweep group's on
[1, P, ...]) so that XLA updates a pmapped state's buffers in place."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state

from vae_jax import base_config, model_fns, optim, steps


def _state(optim_config, key=0, tx=None):
    k1, k2 = jax.random.split(jax.random.key(key))
    params = {'w': jax.random.normal(k1, (6, 5)), 'b': jax.random.normal(k2, (5,))}
    tx = tx or optim.make_optimizer(optim_config, total_steps=10)
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


def test_under_vmap_it_is_each_points_own_update():
    """A sweep group's update (the `custom_vmap` rule: [1, P, ...] leaves, vmapped over axis 1)
    is every point's update alone, also with a per-point learning rate and a gradient shared by
    all points (unbatched, broadcast)."""
    for c in _optim_configs():
        tx = optim.make_optimizer(c, total_steps=10)  # one for all: the states stack
        points = [_state(c, key, tx) for key in range(3)]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *points)
        lrs = jnp.array([1e-3, 3e-3, 1e-2])
        with_lr = lambda s, lr: s.replace(opt_state=optim.set_learning_rate(s.opt_state, lr))
        group = jax.jit(jax.vmap(lambda s, g, lr: optim.apply_gradients(with_lr(s, lr), g)))
        alone = jax.jit(lambda s, g, lr: with_lr(s, lr).apply_gradients(grads=g))
        shared = jax.tree.map(jnp.cos, points[0].params)
        for i in range(3):
            grads = jax.tree.map(lambda p: 100.0 * p if i == 1 else jnp.sin(p), stacked.params)
            stacked = group(stacked, grads, lrs)
            points = [alone(s, jax.tree.map(lambda g: g[p], grads), lrs[p])
                      for p, s in enumerate(points)]
        stacked = jax.jit(jax.vmap(optim.apply_gradients, in_axes=(0, None)))(stacked, shared)
        points = [s.apply_gradients(grads=shared) for s in points]
        for p, point in enumerate(points):
            for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(point)):
                assert a.shape == (3, *b.shape) and a.dtype == b.dtype
                np.testing.assert_allclose(a[p], b, rtol=2e-6, atol=1e-7)


def _copied_state_leaves(lead_axis, points=0):
    """Paths of the state's leaves (of at least 1,000 elements) that the compiled one-device
    pmapped train step copies before updating; with `points`, a sweep group's step over that
    many stacked states."""
    config = base_config()
    config.model.hidden = (64,)
    fns = model_fns.build(config.model, (28, 28, 1), 10)
    state = steps.init_train_state(jax.random.key(0), fns, config, (28, 28, 1), 100)
    devices = jax.devices()[:1]
    step_fn = lambda *a, **k: steps.train_step(*a, **dict(k, lead_axis=lead_axis))
    p_train, _ = steps.pmapped_steps(fns, config, devices, step_fn=step_fn,
                                     vmapped=bool(points))
    batch = {'image': np.zeros((1, 8, 28, 28, 1), np.float32),
             'label': np.zeros((1, 8), np.int32), 'index': np.arange(8, dtype=np.int32)[None]}
    key, hparams = jax.random.key(1), steps.hyperparams(config)
    if points:
        stack = lambda tree: jax.tree.map(lambda a: jnp.stack([a] * points), tree)
        state, key, hparams = stack(state), stack(key), stack(hparams)
        batch = jax.tree.map(lambda a: np.stack([a] * points, axis=1), batch)
    state = steps.replicate(state, devices)
    text = p_train.lower(state, batch, key, hparams).compile().as_text()
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


def test_sweep_group_step_updates_adam_moments_in_place():
    """Likewise for a vmapped sweep group's step, whose leaves are [1, P, ...] per device."""
    moments = lambda paths: [p for p in paths if '.mu' in p or '.nu' in p]
    assert moments(_copied_state_leaves(lead_axis=False, points=3))
    assert moments(_copied_state_leaves(lead_axis=True, points=3)) == []
