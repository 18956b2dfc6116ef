"""benchmarks/step_profile.py's reading of a compiled program: which model code and which
convolution each executed operation is."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax


@pytest.fixture(scope='module')
def step_profile(benchmark):
    return benchmark('step_profile')


def test_model_code_drops_the_transformations_wrappers(step_profile):
    where = step_profile._where
    assert (where('jit(_fun)/transpose(jvp(VAE.decode))/decoder/TransposedConvUpsample_2/unstack')
            == 'bwd decoder/TransposedConvUpsample_2/unstack')
    assert where('jit(_fun)/jvp(VAE.encode)/encoder/max') == 'VAE.encode/encoder/max'
    assert (where('jit(_fun)/jvp(VAE.decode)/decoder/TransposedConvUpsample_3/bhwc,cz->bhwz/'
                  'dot_general') == 'TransposedConvUpsample_3/bhwc,cz->bhwz/dot_general')
    assert where('') == ''


def test_describe_ops_finds_a_gradients_convolutions(step_profile):
    def loss(w, x):
        with jax.named_scope('encoder'):
            y = lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        return jnp.sum(jax.nn.relu(y) ** 2)

    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((4, 4, 3, 5))
    ops = step_profile.describe_ops(jax.jit(jax.grad(loss)).lower(w, x).compile().as_text())
    # The forward convolution: its output, its scope and XLA's description of it.
    forward = [op for op in ops.values() if 'stride=2x2' in op[2]]
    assert forward and forward[0][0] == 'f32[2,4,4,5]'
    assert forward[0][1] == 'encoder/conv_general_dilated'
    assert 'b01f_01io->b01f' in forward[0][2]
    # The weight gradient: a convolution with the output gradient as its kernel, dilated by the
    # stride, whose output has the kernel's elements (XLA orders them its own way).
    weight = [op for op in ops.values() if 'rhs_dilate=2x2' in op[2]]
    assert weight
    dims = [int(d) for d in weight[0][0].split('[')[1].rstrip(']').split(',')]
    assert sorted(dims) == sorted(w.shape)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) == 1, reason='this process has one core')
def test_one_thread_needs_one_core(repo):
    script = repo / 'benchmarks' / 'step_profile.py'
    out = subprocess.run([sys.executable, str(script), '--one_thread'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert 'taskset -c 0' in out.stderr.splitlines()[-1]
