"""vae_jax.xla_setup: vae_jax's XLA flags (its own, a config's, a parent process's) and the
persistent compilation cache."""

import json
import os
import subprocess
import sys

import pytest

from vae_jax import xla_setup
from vae_jax.errors import UserError


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
    assert runs[0][0].split() == list(xla_setup.default_flags())
    assert runs[0][1] == str(tmp_path / 'jax')
    assert any((tmp_path / 'jax').iterdir())
    assert int(runs[0][2]) == 0 and int(runs[1][2]) >= 1  # the second process hit the cache
    off = dict(env, VAE_JAX_COMPILE_CACHE='0', VAE_JAX_XLA_FLAGS='0')
    out = subprocess.run([sys.executable, '-c', code], env=off, capture_output=True, text=True,
                         check=True).stdout.split('\n')
    assert out[0] == '' and out[1] == 'None'
