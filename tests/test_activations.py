"""activations.relu: jax.nn.relu's values and derivatives, its derivative taken from its output;
and relu_minus_zero, the conv decoder's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import activations, models

ROOT = Path(__file__).resolve().parents[1]


def _points():
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0, 1e30, -1e30], np.float32)
    return jnp.asarray(np.concatenate([special, rng.standard_normal(200).astype(np.float32)]))


def test_relu_values_and_derivatives_are_jax_nn_relus():
    x = _points()
    np.testing.assert_array_equal(activations.relu(x), jax.nn.relu(x))
    g = jax.random.normal(jax.random.key(1), x.shape)
    ours = jax.vjp(activations.relu, x)[1](g)[0]
    theirs = jax.vjp(jax.nn.relu, x)[1](g)[0]
    np.testing.assert_array_equal(ours, theirs)  # 0 where x <= 0, x = 0 included
    np.testing.assert_array_equal(jax.jvp(activations.relu, (x,), (g,))[1],
                                  jax.jvp(jax.nn.relu, (x,), (g,))[1])
    # Second derivative: 0 everywhere, as jax.nn.relu's.
    second = jax.vmap(jax.grad(jax.grad(activations.relu)))(x)
    np.testing.assert_array_equal(second, np.zeros(x.shape))


def test_relu_minus_zero_is_relu_but_for_the_sign_of_zero():
    x = _points()
    ours, theirs = activations.relu_minus_zero(x), activations.relu(x)
    np.testing.assert_array_equal(ours, theirs)  # -0.0 == 0.0
    assert np.signbit(ours[x < 0]).all() and not np.signbit(theirs).any()
    g = jax.random.normal(jax.random.key(1), x.shape)
    np.testing.assert_array_equal(jax.vjp(activations.relu_minus_zero, x)[1](g)[0],
                                  jax.vjp(activations.relu, x)[1](g)[0])
    np.testing.assert_array_equal(jax.jvp(activations.relu_minus_zero, (x,), (g,))[1],
                                  jax.jvp(activations.relu, (x,), (g,))[1])


def test_relu_derivative_of_non_finite_values_is_nan_where_it_multiplies_zero():
    """The documented difference: 0 · t is NaN for t = inf, and the derivative at a NaN
    pre-activation is NaN (jax.nn.relu's are 0)."""
    assert np.isnan(jax.grad(activations.relu)(jnp.float32(np.nan)))
    x = jnp.array([-1.0, 2.0])
    g = jnp.array([np.inf, np.inf])
    got = jax.vjp(activations.relu, x)[1](g)[0]
    assert np.isnan(got[0]) and got[1] == np.inf
    np.testing.assert_array_equal(jax.vjp(jax.nn.relu, x)[1](g)[0], [0.0, np.inf])


def test_relu_under_vmap_and_jit_in_a_network():
    """The MLPs' 'relu' and the conv nets' ReLU are this one; gradients through a layer match
    jax.nn.relu's bit for bit."""
    assert models.ACTIVATIONS['relu'] is activations.relu
    assert models.relu is activations.relu  # the conv encoder's
    assert models.relu_minus_zero is activations.relu_minus_zero  # the conv decoder's
    k1, k2 = jax.random.split(jax.random.key(0))
    w = jax.random.normal(k1, (7, 5))
    xs = jax.random.normal(k2, (4, 3, 7))

    def loss(w, x, relu):
        return jnp.sum(jnp.sin(relu(x @ w)))

    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, None)), static_argnums=2)
    np.testing.assert_array_equal(grads(w, xs, activations.relu), grads(w, xs, jax.nn.relu))


# Run in a fresh process with XLA's own flags and the β-VAE family's (the tests' unoptimised
# code generation fuses differently): the f32 elements that the gradient of the conv encoder's
# three stride-2 convolutions + ReLU (64×64×1 -> 8×8×64, batch 64) writes
# (`benchmarks/hlo_work.py`) with each ReLU.
CHILD = """
import json, sys
sys.path.insert(0, 'benchmarks')
from vae_jax import xla_setup
xla_setup.apply_config_flags(xla_setup.BETA_VAE_CPU_FLAGS)
import jax, jax.numpy as jnp
from hlo_work import program_work
from vae_jax import activations
from vae_jax.convolution import Conv

layers = [(Conv(c, (4, 4), strides=(2, 2), padding='SAME'), (1, s, s, c_in))
          for c, s, c_in in ((32, 64, 1), (32, 32, 32), (64, 16, 32))]
params = [layer.init(jax.random.key(0), jnp.zeros(shape)) for layer, shape in layers]
written = {}
for name, relu in (('vae_jax', activations.relu), ('jax.nn', jax.nn.relu)):
    def encode(params, x, relu=relu):
        for (layer, _), p in zip(layers, params):
            x = relu(layer.apply(p, x))
        return jnp.sum(x)
    text = jax.jit(jax.grad(encode)).lower(params, jnp.zeros((64, 64, 64, 1))).compile().as_text()
    written[name] = program_work(text)[1]
print(json.dumps(written))
"""


def test_conv_gradient_does_not_write_the_pre_activations():
    """The reason for the form: with jax.nn.relu the first layer's pre-activation (64×32×32×32)
    is written for the backward pass besides its output; with vae_jax's it is not."""
    env = dict(os.environ, XLA_FLAGS='', VAE_JAX_XLA_FLAGS='1')
    out = subprocess.run([sys.executable, '-c', CHILD], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    written = json.loads(out.stdout.strip().splitlines()[-1])
    assert written['jax.nn'] - written['vae_jax'] >= 64 * 32 * 32 * 32


# The conv β-VAE's real train step (`train_speed.JaxRunner`, batch 64) with vae_jax's ReLUs and
# with the decoder's as `relu` (`relu_grad.py`'s 'shared zero'), in a fresh process with the
# family's flags: the arrays of zeros its compiled program writes (a fusion of a constant alone)
# and its parameters after 3 steps.
STEP_CHILD = """
import hashlib, json, re, sys
sys.path.insert(0, 'benchmarks')
import train_speed as T
from relu_grad import model_relu
from step_profile import compiled_text
from vae_jax import xla_setup
xla_setup.apply_config_flags(T.config_flags('conv'))
import jax, numpy as np
filename, shape, _ = T.MODELS['conv']
config = T.load_config(filename)
out = {}
for form in ('vae_jax', 'shared zero'):
    with model_relu(form):
        r = T.JaxRunner(config, shape, T.host_batches(config.batch_size, shape))
        text = compiled_text(r)
        r.run(3)
    zeros = re.findall(r'= (f32\\[64,[0-9,]+\\])\\{[^}]*\\} fusion\\(%constant[.0-9]*\\)', text)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(r.state.params):
        digest.update(np.asarray(leaf).tobytes())
    out[form] = {'zeros': zeros, 'params': digest.hexdigest()}
print(json.dumps(out))
"""


def test_conv_decoder_relus_share_no_array_of_zeros_and_train_the_same():
    """The reason for relu_minus_zero: with the decoder's ReLUs as `relu`, XLA writes out an
    array of zeros of the encoder's first activation's shape, [64, 32, 32, 32], for the two
    ReLUs to share; with relu_minus_zero it writes none of that size, and the parameters after
    3 steps are the same bit for bit."""
    env = dict(os.environ, XLA_FLAGS='', VAE_JAX_XLA_FLAGS='1')
    out = subprocess.run([sys.executable, '-c', STEP_CHILD], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert 'f32[64,32,32,32]' in got['shared zero']['zeros']
    assert 'f32[64,32,32,32]' not in got['vae_jax']['zeros']
    assert got['vae_jax']['params'] == got['shared zero']['params']
