"""vae_jax.weight_gradient and vae_jax/native: the CPU weight-gradient kernel against numpy
references and lax's autodiff, through the layers' derivatives of every kind, its determinism,
and the fallbacks where it cannot be built."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import convolution, native, train, upsample, weight_gradient

DN = ('NHWC', 'HWIO', 'NHWC')


def _kernel_missing() -> str:
    """Why this machine cannot have the kernel ('' where it can: then its tests must pass)."""
    if shutil.which(os.environ.get('CXX') or 'g++') is None:
        return 'no C++ compiler ($CXX or g++)'
    try:
        flags = open('/proc/cpuinfo').read()
    except OSError:
        return ''
    return '' if ' avx512f' in flags else 'no AVX-512'


# The kernel is compiled on first use for AVX-512 CPUs; elsewhere vae_jax computes XLA's
# gradients (tested below, in subprocesses), and the tests of the kernel itself skip.
needs_kernel = pytest.mark.skipif(
    bool(_kernel_missing()), reason=f'{_kernel_missing()}: vae_jax uses XLA\'s weight gradients')


def _numpy_conv_weight_gradient(x, g, k, pads, stride):
    """sum over n, i, j of x_padded[n, s·i + a, s·j + b, c] g[n, i, j, o], tap by tap."""
    (lo_h, hi_h), (lo_w, hi_w) = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (lo_h, max(hi_h, 0) + k), (lo_w, max(hi_w, 0) + k),
                                       (0, 0)))
    _, oh, ow, _ = g.shape
    dw = np.zeros((k, k, x.shape[-1], g.shape[-1]))
    for a in range(k):
        for b in range(k):
            patch = xp[:, a:a + stride * oh:stride, b:b + stride * ow:stride]
            dw[a, b] = np.einsum('nijc,nijo->co', patch, g.astype(np.float64))
    return dw


def _numpy_transposed_conv_weight_gradient(x, g, k, pad, stride):
    """y[s·i - pad + t] += x[i] w[t]: dw[t] = sum over i of x[i] g[s·i - pad + t] (in range)."""
    _, h, w, _ = x.shape
    _, oh, ow, _ = g.shape
    dw = np.zeros((k, k, x.shape[-1], g.shape[-1]))
    for a in range(k):
        for b in range(k):
            for i in range(h):
                for j in range(w):
                    r, c = stride * i - pad + a, stride * j - pad + b
                    if 0 <= r < oh and 0 <= c < ow:
                        dw[a, b] += np.einsum('nc,no->co', x[:, i, j], g[:, r, c])
    return dw


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


CASES = [  # x shape, k, stride, pads, output channels
    ((3, 16, 16, 32), 4, 2, ((1, 1), (1, 1)), 32),   # the β-VAE encoder's middle layers
    ((2, 8, 8, 64), 4, 2, ((1, 1), (1, 1)), 64),
    ((2, 9, 7, 8), 4, 2, ((0, 2), (2, 1)), 32),      # odd sizes, uneven padding
    ((2, 10, 10, 16), 3, 1, ((1, 1), (1, 1)), 96),   # stride 1, 3 blocks of 32 outputs
    ((1, 12, 12, 8), 6, 3, ((2, 3), (1, 2)), 32),
    ((0, 8, 8, 8), 4, 2, ((1, 1), (1, 1)), 32),      # an empty batch: zeros
]


@needs_kernel
@pytest.mark.parametrize('shape,k,stride,pads,out', CASES)
def test_kernel_matches_numpy_and_lax(shape, k, stride, pads, out):
    x = _normal(shape, 0)
    oh = (shape[1] + sum(pads[0]) - k) // stride + 1
    ow = (shape[2] + sum(pads[1]) - k) // stride + 1
    g = _normal((shape[0], oh, ow, out), 1)
    assert weight_gradient.kernel_applies(shape, (k, k, shape[-1], out), jnp.float32)
    f = jax.jit(weight_gradient.conv_weight_gradient, static_argnums=(2, 3, 4))
    got = f(jnp.asarray(x), jnp.asarray(g), (k, k, shape[-1], out), pads, stride)
    assert weight_gradient.TARGET in f.lower(x, g, (k, k, shape[-1], out), pads,
                                             stride).as_text()
    ref = _numpy_conv_weight_gradient(x, g, k, pads, stride)
    scale = max(np.abs(ref).max(), 1.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * scale)
    xla = weight_gradient.xla_conv_weight_gradient(x, g, (k, k, shape[-1], out), pads, stride)
    np.testing.assert_allclose(got, xla, rtol=1e-5, atol=1e-4 * scale)
    # The same bits on every call (fixed groups of images, added in order).
    again = f(jnp.asarray(x), jnp.asarray(g), (k, k, shape[-1], out), pads, stride)
    np.testing.assert_array_equal(got, again)


@needs_kernel
def test_transposed_conv_weight_gradient_matches_numpy():
    x, g = _normal((2, 6, 5, 32), 2), _normal((2, 12, 10, 16), 3)
    f = jax.jit(weight_gradient.transposed_conv_weight_gradient, static_argnums=(2, 3, 4))
    assert weight_gradient.TARGET in f.lower(x, g, (4, 4, 32, 16), 1, 2).as_text()
    got = f(jnp.asarray(x), jnp.asarray(g), (4, 4, 32, 16), 1, 2)
    ref = _numpy_transposed_conv_weight_gradient(x, g, 4, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize('dtype,channels,out', [(jnp.float32, 4, 32), (jnp.float32, 8, 16),
                                                (jnp.bfloat16, 8, 32)])
def test_shapes_the_kernel_does_not_cover_go_to_xla(dtype, channels, out):
    assert not weight_gradient.kernel_applies((2, 8, 8, channels), (4, 4, channels, out), dtype)
    x = _normal((2, 8, 8, channels), 4)
    g = _normal((2, 4, 4, out), 5)
    f = jax.jit(weight_gradient.conv_weight_gradient, static_argnums=(2, 3, 4))
    args = (jnp.asarray(x, dtype), jnp.asarray(g, dtype), (4, 4, channels, out),
            ((1, 1), (1, 1)), 2)
    assert weight_gradient.TARGET not in f.lower(*args).as_text()
    ref = _numpy_conv_weight_gradient(x, g, 4, ((1, 1), (1, 1)), 2)
    tol = 5e-2 if dtype == jnp.bfloat16 else 1e-4
    np.testing.assert_allclose(np.asarray(f(*args), np.float32), ref, rtol=tol,
                               atol=tol * np.abs(ref).max())


def _layer_losses():
    strided = lambda x, w: convolution.strided_conv(x, w, (2, 2), ((1, 1), (1, 1)),
                                                    dimension_numbers=DN)
    lax_strided = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                                            dimension_numbers=DN)
    return [(strided, lax_strided, (4, 16, 16, 32), (4, 4, 32, 64)),
            (upsample.upsample_conv, upsample._upsample_conv_dilated, (4, 8, 8, 64),
             (4, 4, 64, 32))]


@needs_kernel
@pytest.mark.parametrize('layer,ref,x_shape,w_shape', _layer_losses())
def test_layers_derivatives_through_the_kernel_match_lax(layer, ref, x_shape, w_shape):
    """The strided convolution's and the ×2 transposed convolution's weight gradients run the
    kernel; gradients, vmapped gradients, forward-over-reverse and reverse-over-reverse
    derivatives agree with lax's own convolutions."""
    x = jnp.asarray(_normal(x_shape, 6))
    w = jnp.asarray(_normal(w_shape, 7)) * 0.1
    ours = lambda x, w: jnp.sum(jnp.sin(layer(x, w)))
    theirs = lambda x, w: jnp.sum(jnp.sin(ref(x, w)))
    grad = jax.jit(jax.grad(ours, (0, 1)))
    assert weight_gradient.TARGET in grad.lower(x, w).as_text()

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * np.abs(np.asarray(b)).max())

    for a, b in zip(grad(x, w), jax.grad(theirs, (0, 1))(x, w)):
        close(a, b)
    ws = jnp.stack([w, -2 * w])
    close(jax.vmap(jax.grad(ours, 1), (None, 0))(x, ws),
          jax.vmap(jax.grad(theirs, 1), (None, 0))(x, ws))
    close(jax.jvp(jax.grad(ours, 1), (x, w), (x, w))[1],
          jax.jvp(jax.grad(theirs, 1), (x, w), (x, w))[1])
    second = lambda f: jax.grad(lambda x, w: jnp.sum(jax.grad(f, 1)(x, w) ** 2), (0, 1))(x, w)
    for a, b in zip(second(ours), second(theirs)):
        close(a, b)


def _run(code, env_update, tmp_path, one_core=False):
    env = {k: v for k, v in os.environ.items() if k not in ('VAE_JAX_NATIVE', 'CXX')}
    env.update(VAE_JAX_CACHE=str(tmp_path / 'cache'), **env_update)
    if one_core:  # before JAX starts: XLA's thread pool then has one thread, the kernel no helper
        code = 'import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n' + code
    return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)


CHECK = '''
import jax, jax.numpy as jnp, numpy as np
from vae_jax import native, weight_gradient
x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32, 32, 32)), jnp.float32)
g = jnp.asarray(np.random.default_rng(1).normal(size=(64, 16, 16, 32)), jnp.float32)
dw = weight_gradient.conv_weight_gradient(x, g, (4, 4, 32, 32), ((1, 1), (1, 1)), 2)
ref = weight_gradient.xla_conv_weight_gradient(x, g, (4, 4, 32, 32), ((1, 1), (1, 1)), 2)
print('loaded', native.load(), float(jnp.abs(dw - ref).max() / jnp.abs(ref).max()))
import os; print('cores', len(os.sched_getaffinity(0)))
print('bits', np.asarray(dw).tobytes().hex()[:4000])
'''


@needs_kernel
def test_build_once_cache_and_fallbacks(tmp_path):
    """A fresh cache builds the kernel once; a second process loads that file; a damaged file
    is built again; the kernel's bits are the same in a process pinned to one core (XLA's
    pool of one thread) as with every core; without a compiler,
    with one that fails, or with VAE_JAX_NATIVE=0, vae_jax logs why and computes the same
    gradient with XLA."""
    first = _run(CHECK, {}, tmp_path)
    assert first.returncode == 0, first.stderr
    built = list((tmp_path / 'cache' / 'native').glob('*.so'))
    assert len(built) == 1 and 'loaded True' in first.stdout
    mtime = built[0].stat().st_mtime_ns
    one_thread = _run(CHECK, {}, tmp_path, one_core=True)
    assert one_thread.returncode == 0, one_thread.stderr
    assert 'cores 1' in one_thread.stdout
    if len(os.sched_getaffinity(0)) > 1:
        assert 'cores 1' not in first.stdout  # the first ran with every core: two threads
    assert built[0].stat().st_mtime_ns == mtime  # not rebuilt
    built[0].write_bytes(b'not a shared library')  # damaged: built again
    rebuilt = _run(CHECK, {}, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert 'loaded True' in rebuilt.stdout and 'Rebuilding the damaged' in rebuilt.stderr
    bits = [line for out in (first, one_thread, rebuilt) for line in out.stdout.splitlines()
            if line.startswith('bits')]
    assert bits[0] == bits[1] == bits[2]
    assert float(first.stdout.split()[2]) < 1e-5
    failing = tmp_path / 'failing-cxx'  # knows its version, cannot compile
    failing.write_text('#!/bin/sh\n[ "$1" = --version ] && echo failing 1.0 && exit 0\n'
                       'echo "no such header" >&2\nexit 1\n')
    failing.chmod(0o755)
    for env, why in (({'CXX': str(tmp_path / 'missing')}, 'missing'),
                     ({'CXX': str(failing)}, 'no such header'), ({'VAE_JAX_NATIVE': '0'}, None)):
        out = _run(CHECK, env, tmp_path / 'other')
        assert out.returncode == 0, out.stderr
        assert 'loaded False' in out.stdout and float(out.stdout.split()[2]) == 0.0
        if why:
            assert 'CPU kernels unavailable' in out.stderr and why in out.stderr


@needs_kernel
def test_library_name_changes_with_the_source(monkeypatch, tmp_path):
    path = native.library_path()
    changed = tmp_path / 'conv_weight_gradient.cc'
    changed.write_text(native.SOURCE.read_text() + '\n// changed\n')
    monkeypatch.setattr(native, 'SOURCE', changed)
    assert native.library_path() != path and native.library_path().parent == path.parent


@needs_kernel
def test_conv_run_through_the_kernel_resumes_bit_identically(tmp_path):
    """The β-VAE (whose middle layers' weight gradients are the kernel's) stopped after its
    step-2 checkpoint and resumed ends bit for bit where the uninterrupted run does."""
    path = Path(__file__).resolve().parents[1] / 'experiments' / 'beta_vae.py'
    spec = importlib.util.spec_from_file_location('beta_vae_experiment', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config('quick,steps=4')
    config.checkpoint_every, config.log_every, config.eval_every = 2, 2, 4
    config.batch_size = 16
    config.disentanglement.metrics = ()
    assert native.load()
    straight = train.train_and_evaluate(config, tmp_path / 'straight')
    shutil.copytree(tmp_path / 'straight', tmp_path / 'resumed')
    shutil.rmtree(tmp_path / 'resumed' / 'checkpoints' / '4')
    resumed = train.train_and_evaluate(config, tmp_path / 'resumed')
    assert int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(a, b)
    # Each launch's history line names the kernels' build it loaded.
    history = (tmp_path / 'resumed' / 'history.jsonl').read_text().splitlines()
    assert [json.loads(line)['cpu_kernels'] for line in history] == [
        native.library_path().name] * 2
