"""optim.global_norm: optax.global_norm's value, computed so that XLA:CPU does not write the
gradients' squares out inside a train step."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import optim

ROOT = Path(__file__).resolve().parents[1]

# Leaf shapes around every boundary of the computation: scalars, sizes below, at and above a
# whole 32 x 32 block, and below, at and above `optim.SMALL_LEAF`.
SHAPES = [(), (3,), (1024,), (1025,), (7, 5, 3), (optim.SMALL_LEAF - 1,), (optim.SMALL_LEAF,),
          (128, 129), (300, 157)]


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
    tree = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in [(1025,), (3, 4), ()]]
    grads = jax.grad(optim.global_norm)(tree)
    norm = _reference(tree)
    for g, x in zip(grads, tree):
        assert g.shape == x.shape
        np.testing.assert_allclose(g, np.asarray(x) / norm, rtol=1e-5, atol=1e-7)


# Run in a fresh process with XLA's own flags (the tests' unoptimised code generation fuses
# differently): the f32 elements that the compiled one-device pmapped train program of the main
# job's MLP (`experiments/vae.py`: 10 steps per call of 128 examples) writes per call (its
# top-level kernels' results: `benchmarks/grad_norm.py`'s `program_work`), with each form of the
# step's grad_norm.
CHILD = """
import importlib.util, json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from vae_jax import model_fns, optim, steps
sys.path.insert(0, 'benchmarks')
from grad_norm import program_work

spec = importlib.util.spec_from_file_location('vae', 'experiments/vae.py')
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()
fns = model_fns.build(config.model, (28, 28, 1), 10)
state = steps.init_train_state(jax.random.key(0), fns, config, (28, 28, 1), 100)
devices = jax.devices()[:1]
state = steps.replicate(state, devices)
batch = {'image': np.zeros((1, 10, 128, 28, 28, 1), np.float32),
         'label': np.zeros((1, 10, 128), np.int32),
         'index': np.broadcast_to(np.arange(128, dtype=np.int32), (1, 10, 128))}
written = {}
for form, norm in [('vae_jax', optim.global_norm), ('optax', optax.global_norm),
                   ('none', lambda grads: jnp.zeros([], jnp.float32))]:
    steps.global_norm = norm
    p_train = steps.pmapped_multi_step(fns, config, devices)
    text = p_train.lower(state, batch, jax.random.key(1),
                         steps.hyperparams(config)).compile().as_text()
    written[form] = program_work(text)[1]
print(json.dumps(written))
"""


def test_train_step_does_not_write_the_gradients_squares_out():
    """The reason for the form: with optax's, the main job's step writes each large gradient's
    squares (shared with Adam's second-moment update) out as an array, and reads it back to sum
    it; with vae_jax's it writes nothing of their size."""
    env = dict(os.environ, XLA_FLAGS='')
    out = subprocess.run([sys.executable, '-c', CHILD],
                         env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    written = json.loads(out.stdout.strip().splitlines()[-1])
    largest = 500 * 784  # the encoder's first and the decoder's last kernels
    assert written['optax'] - written['none'] >= 2 * largest
    assert written['vae_jax'] - written['none'] < largest // 10
