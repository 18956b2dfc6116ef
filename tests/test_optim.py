"""optim.apply_gradients: flax's optimizer update, computed on [1, ...] leaves (a sweep group's on
[1, P, ...]) so that XLA updates a pmapped state's buffers in place; and optim.global_norm:
optax.global_norm's value, computed so that XLA:CPU does not write the gradients' squares out
inside a train step."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from vae_jax import base_config, model_fns, optim, steps

ROOT = Path(__file__).resolve().parents[1]


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


# global_norm: leaf shapes around its boundaries: small leaves (summed together) of sizes below,
# at and above a whole 32 x 32 block; and large leaves (summed one by one) of sizes at and
# above `optim.SMALL_LEAF` and a multiple of 1024.
SHAPES = [(), (3,), (1024,), (1025,), (7, 5, 3), (optim.SMALL_LEAF - 1,), (optim.SMALL_LEAF,),
          (128, 129), (300, 157), (512, 64)]


def _reference(tree):
    return math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2))
                         for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize('shapes', [SHAPES, SHAPES[:2], SHAPES[-2:], [(5,)], [(40000,)]])
def test_global_norm_is_the_float64_norm_to_float_rounding(shapes):
    rng = np.random.default_rng(len(shapes))
    tree = {f'leaf{i}': jnp.asarray(rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3),
                                    jnp.float32) for i, s in enumerate(shapes)}
    got = float(jax.jit(optim.global_norm)(tree))
    np.testing.assert_allclose(got, _reference(tree), rtol=1e-6)
    np.testing.assert_allclose(got, float(optax.global_norm(tree)), rtol=1e-6)


def test_global_norm_of_an_empty_tree_is_zero():
    assert float(optim.global_norm({})) == 0.0


def test_global_norm_under_vmap_is_each_points_norm():
    rng = np.random.default_rng(0)
    tree = {'w': jnp.asarray(rng.standard_normal((4, 300, 157)), jnp.float32),
            'b': jnp.asarray(rng.standard_normal((4, 157)), jnp.float32)}
    got = jax.jit(jax.vmap(optim.global_norm))(tree)
    for p in range(4):
        np.testing.assert_allclose(got[p], _reference(jax.tree.map(lambda a: a[p], tree)),
                                   rtol=1e-6)


def test_global_norm_gradient_is_the_unit_direction():
    """Differentiable like optax's: d|g|/dg = g / |g| (the padding gets no gradient)."""
    rng = np.random.default_rng(1)
    tree = [jnp.asarray(rng.standard_normal(s), jnp.float32)
            for s in [(1025,), (3, 4), (), (optim.SMALL_LEAF + 1,)]]
    grads = jax.grad(optim.global_norm)(tree)
    norm = _reference(tree)
    for g, x in zip(grads, tree):
        assert g.shape == x.shape
        np.testing.assert_allclose(g, np.asarray(x) / norm, rtol=1e-5, atol=1e-7)


# Run in a fresh process with XLA's own flags (the tests' unoptimised code generation fuses
# differently): the f32 elements that the compiled one-device pmapped train program of the main
# job's MLP (`experiments/vae.py`: 10 steps per call of 128 examples) writes per step
# (`benchmarks/hlo_work.py`), with each form of the step's grad_norm; with the main job's 500
# hidden units, and with 512, whose large kernels fill whole 32 x 32 blocks.
CHILD = """
import importlib.util, json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from vae_jax import model_fns, optim, steps
sys.path.insert(0, 'benchmarks')
from hlo_work import program_work

spec = importlib.util.spec_from_file_location('vae', 'experiments/vae.py')
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()
devices = jax.devices()[:1]
batch = {'image': np.zeros((1, 10, 128, 28, 28, 1), np.float32),
         'label': np.zeros((1, 10, 128), np.int32),
         'index': np.broadcast_to(np.arange(128, dtype=np.int32), (1, 10, 128))}
written = {}
for hidden in (500, 512):
    config.model.hidden = (hidden,)
    fns = model_fns.build(config.model, (28, 28, 1), 10)
    state = steps.replicate(
        steps.init_train_state(jax.random.key(0), fns, config, (28, 28, 1), 100), devices)
    for form, norm in [('vae_jax', optim.global_norm), ('optax', optax.global_norm),
                       ('none', lambda grads: jnp.zeros([], jnp.float32))]:
        steps.global_norm = norm
        p_train = steps.pmapped_multi_step(fns, config, devices)
        text = p_train.lower(state, batch, jax.random.key(1),
                             steps.hyperparams(config)).compile().as_text()
        written[f'{form} {hidden}'] = program_work(text)[1]
print(json.dumps(written))
"""


def test_train_step_does_not_write_the_gradients_squares_out():
    """The reason for global_norm's form: with optax's, the main job's step writes each large
    gradient's squares (shared with Adam's second-moment update) out as an array, and reads it
    back to sum it; with vae_jax's it writes nothing of their size, also where they fill whole
    blocks."""
    env = dict(os.environ, XLA_FLAGS='', VAE_JAX_XLA_FLAGS='1')  # vae_jax's own flags
    out = subprocess.run([sys.executable, '-c', CHILD], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    written = json.loads(out.stdout.strip().splitlines()[-1])
    for hidden in (500, 512):
        largest = hidden * 784  # the encoder's first and the decoder's last kernels
        assert written[f'optax {hidden}'] - written[f'none {hidden}'] >= 2 * largest
        assert written[f'vae_jax {hidden}'] - written[f'none {hidden}'] < largest // 10
