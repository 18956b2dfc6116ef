"""vae_jax.convolution (the formulations of nn.Conv) and vae_jax.xla_setup (flags, cache)."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import convolution, xla_setup
from vae_jax.errors import UserError

DN = ('NHWC', 'HWIO', 'NHWC')


def _loss(conv, stride, pads):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), pads, dimension_numbers=DN)))


@pytest.mark.parametrize('shape,kernel,stride,pads', [
    ((2, 16, 16, 3), 4, 2, [(1, 2), (1, 2)]),
    ((2, 16, 16, 5), 4, 2, [(1, 1), (1, 1)]),  # 4+ channels: the forward pass is lax's
    ((2, 7, 9, 2), 4, 2, [(1, 2), (1, 2)]),
    ((1, 12, 12, 2), 6, 2, [(2, 2), (2, 2)]),
    ((2, 12, 12, 2), 6, 3, [(2, 3), (1, 2)]),
    ((2, 8, 8, 3), 3, 1, 'SAME'),     # stride 1: lax's own
    ((2, 9, 9, 3), 3, 2, 'SAME'),     # a kernel the stride does not divide: lax's own
])
def test_strided_conv_is_lax_values_and_gradients(shape, kernel, stride, pads):
    """Same values (bit for bit from 4 input channels; to rounding below, where the forward
    pass goes through space-to-depth) and gradients (to float rounding) as lax, under jit."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, shape[-1], 5)), jnp.float32)
    ours = jax.jit(lambda x, w: convolution.strided_conv(x, w, (stride, stride), pads,
                                                          dimension_numbers=DN))
    ref = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                                             dimension_numbers=DN))
    if shape[-1] >= convolution.S2D_FORWARD_CHANNELS or stride == 1 or kernel % stride:
        np.testing.assert_array_equal(ours(x, w), ref(x, w))
    else:
        np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
    got = jax.jit(jax.grad(_loss(convolution.strided_conv, stride, pads), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(_loss(jax.lax.conv_general_dilated, stride, pads),
                            argnums=(0, 1)))(x, w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    # Forward mode too (the custom rule is a JVP).
    t = jnp.ones_like(x)
    _, jvp = jax.jvp(lambda x: convolution.strided_conv(x, w, (stride, stride), pads,
                                                         dimension_numbers=DN), (x,), (t,))
    _, jvp_ref = jax.jvp(lambda x: jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=DN), (x,), (t,))
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-4, atol=1e-4)
    tw = jnp.ones_like(w)  # and through the kernel
    _, jvp = jax.jvp(lambda w: convolution.strided_conv(x, w, (stride, stride), pads,
                                                         dimension_numbers=DN), (w,), (tw,))
    _, jvp_ref = jax.jvp(lambda w: jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=DN), (w,), (tw,))
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('channels', [1, 4])
def test_conv_is_flax_conv_with_the_same_parameters(channels):
    """`convolution.Conv` is nn.Conv: the same parameter tree, values and gradients, so runs
    and checkpoints written before it stay valid (values bit for bit from 4 input channels,
    to rounding below, where the forward pass goes through space-to-depth)."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 16, 16, channels)), jnp.float32)
    ours = convolution.Conv(4, (4, 4), strides=(2, 2), padding='SAME')
    theirs = nn.Conv(4, (4, 4), strides=(2, 2), padding='SAME')
    params = theirs.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    if channels >= convolution.S2D_FORWARD_CHANNELS:
        np.testing.assert_array_equal(ours.apply(params, x), theirs.apply(params, x))
    else:
        np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5,
                                   atol=1e-5)
    loss = lambda m: lambda p: jnp.sum(m.apply(p, x) ** 2)
    for g, r in zip(jax.tree.leaves(jax.grad(loss(ours))(params)),
                    jax.tree.leaves(jax.grad(loss(theirs))(params))):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_unsupported_layouts_go_to_lax():
    """NCHW (lax's default when dimension_numbers is None) and grouped convolutions are
    passed through unchanged."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 4, 8, 8)), jnp.float32)      # NCHW
    w = jnp.asarray(rng.normal(size=(6, 4, 4, 4)), jnp.float32)      # OIHW
    np.testing.assert_array_equal(
        convolution.strided_conv(x, w, (2, 2), [(1, 1), (1, 1)]),
        jax.lax.conv_general_dilated(x, w, (2, 2), [(1, 1), (1, 1)]))
    xg = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
    wg = jnp.asarray(rng.normal(size=(4, 4, 2, 6)), jnp.float32)
    np.testing.assert_array_equal(
        convolution.strided_conv(xg, wg, (2, 2), 'SAME', dimension_numbers=DN,
                                 feature_group_count=2),
        jax.lax.conv_general_dilated(xg, wg, (2, 2), 'SAME', dimension_numbers=DN,
                                     feature_group_count=2))


def _upsample_reference(x, w):
    """numpy loop: out[2i - (k/2 - 1) + t] += x[i] w[t] along each spatial axis (PyTorch's
    ConvTranspose2d(k, 2, k/2 - 1))."""
    b, h, wd, _ = x.shape
    k, p = w.shape[0], w.shape[0] // 2 - 1
    out = np.zeros((b, 2 * h + k, 2 * wd + k, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            for t in range(k):
                for u in range(k):
                    out[:, 2 * i + t, 2 * j + u] += x[:, i, j] @ w[t, u]
    return out[:, p:p + 2 * h, p:p + 2 * wd]


UPSAMPLE_FORMS = (convolution._upsample_conv_phases, convolution._upsample_conv_blocks,
                  convolution._upsample_conv_dilated, convolution._upsample_conv_allphase,
                  convolution._upsample_conv_cpu)


@pytest.mark.parametrize('k,c_out', [(2, 2), (4, 2), (4, 5), (6, 1)])
def test_upsample_conv_is_the_transposed_convolution(k, c_out):
    """Every formulation (per-phase convolutions, all phases in one convolution, matmul +
    overlap-add, and the CPU form's own derivatives: CPU; zero-dilated input: elsewhere) gives
    the loop reference's values, and the same gradients and forward-mode derivatives as the
    others; upsample_conv picks the blocks below BLOCKS_CHANNELS output channels."""
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 5, 4, 3))
    w = rng.normal(size=(k, k, 3, c_out))
    xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    ref = _upsample_reference(x, w)
    for f in UPSAMPLE_FORMS:
        np.testing.assert_allclose(jax.jit(f)(xj, wj), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(convolution.upsample_conv(xj, wj), ref, rtol=1e-5, atol=1e-5)
    grads = [jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))(xj, wj)
             for f in UPSAMPLE_FORMS]
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    tangents = (jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                jnp.asarray(rng.normal(size=w.shape), jnp.float32))
    jvps = [jax.jvp(f, (xj, wj), tangents)[1] for f in UPSAMPLE_FORMS]
    for other in jvps[1:]:
        np.testing.assert_allclose(jvps[0], other, rtol=1e-4, atol=1e-4)
    chosen = (convolution._upsample_conv_blocks if c_out < convolution.BLOCKS_CHANNELS
              else convolution._upsample_conv_cpu)
    np.testing.assert_array_equal(jax.jit(convolution.upsample_conv)(xj, wj),
                                  jax.jit(chosen)(xj, wj))


def test_upsample_conv_cpu_reverse_mode_needs_no_dilated_or_phase_slices():
    """The CPU form's input gradient is one stride-2 convolution of the output gradient, and a
    gradient for the kernel alone computes no input gradient at all."""
    x, w = jnp.ones((2, 4, 4, 3)), jnp.ones((4, 4, 3, 5))
    loss = lambda x, w: jnp.sum(jnp.sin(convolution._upsample_conv_cpu(x, w)))  # noqa: E731
    convs = lambda jaxpr: [e.params for e in jaxpr.eqns  # noqa: E731
                           if e.primitive.name == 'conv_general_dilated']
    # With respect to x: the forward pass's one convolution and the input gradient's one.
    x_convs = convs(jax.make_jaxpr(jax.grad(loss))(x, w).jaxpr)
    assert len(x_convs) == 2
    assert [p['window_strides'] for p in x_convs] == [(1, 1), (2, 2)]
    assert all(p['lhs_dilation'] == (1, 1) for p in x_convs)
    # With respect to the kernel: the forward pass and four per-phase weight gradients.
    w_convs = convs(jax.make_jaxpr(jax.grad(loss, argnums=1))(x, w).jaxpr)
    assert len(w_convs) == 5
    assert all(p['window_strides'] == (1, 1) and p['lhs_dilation'] == (1, 1) for p in w_convs)


def test_upsample_conv_refuses_odd_kernels():
    with pytest.raises(ValueError, match='even size'):
        convolution.upsample_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)))


def test_depth_to_space_inverts_space_to_depth():
    x = jnp.arange(2 * 6 * 4 * 3, dtype=jnp.float32).reshape(2, 6, 4, 3)
    s = convolution.space_to_depth(x, 2)
    assert s.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(s[0, 0, 0], np.concatenate([x[0, 0, 0], x[0, 0, 1],
                                                              x[0, 1, 0], x[0, 1, 1]]))
    np.testing.assert_array_equal(convolution.depth_to_space(s, 2), x)


def test_add_xla_flags_appends_and_never_overrides():
    env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
    assert xla_setup.add_xla_flags(env) == list(xla_setup.default_flags())
    assert env['XLA_FLAGS'].split() == ['--xla_force_host_platform_device_count=4',
                                        *xla_setup.default_flags()]
    assert xla_setup.add_xla_flags(env) == []  # already there
    name = xla_setup.CPU_FLAGS[0].split('=')[0]
    mine = {'XLA_FLAGS': f'{name}=individual_convolution'}
    assert xla_setup.add_xla_flags(mine) == []  # the user's value stays
    assert mine['XLA_FLAGS'] == f'{name}=individual_convolution'
    empty = {}
    xla_setup.add_xla_flags(empty)
    assert empty['XLA_FLAGS'] == ' '.join(xla_setup.default_flags())


def test_gpu_flags_are_added_where_jax_has_a_cuda_plugin(tmp_path):
    """Importing vae_jax adds GPU_FLAGS only where a JAX CUDA plugin module is installed
    (jax_plugins.xla_cuda12/13): here a stand-in module of that name, which is never imported,
    since JAX's backends do not start."""
    code = 'import os, vae_jax; print(os.environ.get("XLA_FLAGS", ""))'

    def flags(extra_path):
        env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', xla_setup.ADDED_ENV)}
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [extra_path, env.get('PYTHONPATH')]))
        out = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                             capture_output=True, text=True)
        return out.stdout.split()

    plugin = tmp_path / 'jax_plugins' / 'xla_cuda13'
    plugin.mkdir(parents=True)
    (plugin / '__init__.py').write_text('raise SystemExit("imported")\n')
    assert flags('') == list(xla_setup.default_flags())  # CPU_FLAGS alone on a CPU machine
    assert flags(str(tmp_path)) == [*xla_setup.CPU_FLAGS, *xla_setup.GPU_FLAGS]


def test_config_flags_replace_vae_jax_values_not_the_users(tmp_path):
    """A config's xla_cpu_flags replace vae_jax's own value of a flag and add new ones; a flag
    the user set keeps the user's value; anything not written as an XLA flag is refused."""
    name = xla_setup.CPU_FLAGS[0].split('=')[0]
    ours = f'--xla_force_host_platform_device_count=4 {xla_setup.CPU_FLAGS[0]}'
    merged = xla_setup.merge_flags(ours, f'{xla_setup.BETA_VAE_CPU_FLAGS} --xla_cpu_foo=1', set())
    assert merged.split() == ['--xla_force_host_platform_device_count=4',
                              xla_setup.BETA_VAE_CPU_FLAGS, '--xla_cpu_foo=1']
    assert xla_setup.merge_flags(f'{name}=x', xla_setup.BETA_VAE_CPU_FLAGS, {name}) == f'{name}=x'
    for bad in ['xla_cpu_foo=1', '--jax_foo=1', '--xla_cpu_foo=1 -x', ['--xla_cpu_foo=1']]:
        with pytest.raises(UserError, match='must be XLA flags'):
            xla_setup.check_flags(bad)
    # A run's saved flags: read from its config.json, '' when there are none or it is damaged.
    (tmp_path / 'config.json').write_text(json.dumps({'xla_cpu_flags': '--xla_cpu_foo=1'}))
    assert xla_setup.saved_flags(tmp_path) == '--xla_cpu_foo=1'
    (tmp_path / 'config.json').write_text('{"xla_cpu_fl')
    assert xla_setup.saved_flags(tmp_path) == xla_setup.saved_flags(tmp_path / 'none') == ''


def test_a_child_process_does_not_take_its_parents_vae_jax_flags_for_the_users():
    """A process started by a vae_jax process (the ledger's launches, benchmark workers)
    inherits the flags its parent added; it starts again from the user's alone, so its own
    config's flags apply, and another config's flags do not leak into it."""
    user = '--xla_cpu_enable_fast_min_max=false'
    code = ('import os, sys, vae_jax\n'
            'from vae_jax import xla_setup\n'
            'print(os.environ["XLA_FLAGS"])\n'
            'xla_setup.apply_config_flags(sys.argv[1])\n'
            'print(os.environ["XLA_FLAGS"])\n')

    def child(env, config_flags):
        out = subprocess.run([sys.executable, '-c', code, config_flags], env=env, check=True,
                             capture_output=True, text=True)
        return [line.split() for line in out.stdout.strip().splitlines()]

    # The parent imported vae_jax (adding CPU_FLAGS) and then set the conv family's flags.
    parent = dict(os.environ, XLA_FLAGS=f'{user} {xla_setup.BETA_VAE_CPU_FLAGS}',
                  **{xla_setup.ADDED_ENV: xla_setup.BETA_VAE_CPU_FLAGS})
    start, conv = child(parent, xla_setup.BETA_VAE_CPU_FLAGS)
    assert start == [user, *xla_setup.CPU_FLAGS]  # the parent's +eltwise is gone
    assert conv == [user, xla_setup.BETA_VAE_CPU_FLAGS]  # its own config's flags apply
    start, mlp = child(parent, '')
    assert mlp == [user, *xla_setup.CPU_FLAGS]
    # A flag the user set to the same name keeps the user's value in the child.
    mine = dict(parent, XLA_FLAGS=f'{xla_setup.CPU_FLAGS[0].split("=")[0]}=-dot')
    assert child(mine, xla_setup.BETA_VAE_CPU_FLAGS)[1] == mine['XLA_FLAGS'].split()


def test_importing_vae_jax_sets_the_flags_and_the_compilation_cache(tmp_path):
    """In a fresh process: the flags reach XLA_FLAGS, the compilation cache is in
    $VAE_JAX_CACHE/jax and a second process reads what the first compiled (no compile)."""
    code = ('import os, jax, jax.numpy as jnp, vae_jax\n'
            'jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)\n'
            'f = jax.jit(lambda x: jnp.linalg.qr(x @ x.T + jnp.eye(64))[0].sum())\n'
            'hits = []\n'
            'from jax import monitoring\n'
            'monitoring.register_event_listener(lambda e, **k: hits.append(e))\n'
            'f(jnp.ones((64, 64))).block_until_ready()\n'
            'print(os.environ["XLA_FLAGS"]); print(jax.config.jax_compilation_cache_dir)\n'
            'print(sum("cache_hits" in e for e in hits))\n')
    env = dict(os.environ, VAE_JAX_CACHE=str(tmp_path), XLA_FLAGS='')
    env.pop('VAE_JAX_COMPILE_CACHE', None)
    env.pop('VAE_JAX_XLA_FLAGS', None)
    runs = [subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                           text=True, check=True).stdout.split('\n') for _ in range(2)]
    assert runs[0][0].split() == list(xla_setup.CPU_FLAGS)
    assert runs[0][1] == str(tmp_path / 'jax')
    assert any((tmp_path / 'jax').iterdir())
    assert int(runs[0][2]) == 0 and int(runs[1][2]) >= 1  # the second process hit the cache
    off = dict(env, VAE_JAX_COMPILE_CACHE='0', VAE_JAX_XLA_FLAGS='0')
    out = subprocess.run([sys.executable, '-c', code], env=off, capture_output=True, text=True,
                         check=True).stdout.split('\n')
    assert out[0] == '' and out[1] == 'None'
