"""launch.py and the commands freeze what lives as long as the process out of the garbage
collector's sight (vae_jax.gc_freeze); VAE_JAX_GC_FREEZE=0 freezes nothing."""

import os
import subprocess
import sys

import pytest

from vae_jax import gc_freeze

# After launch.py's module-level code (its imports, then gc_freeze.freeze()), absl stops at
# --helpshort; the atexit hook, registered first, runs last and reports the collector's state.
LAUNCH = '''
import atexit, gc, runpy, sys
atexit.register(lambda: print('frozen', gc.get_freeze_count(), 'enabled', gc.isenabled()))
sys.argv = ['launch.py', '--helpshort']
runpy.run_path('launch.py', run_name='__main__')
'''

COMMAND = '''
import gc
from vae_jax import errors
errors.run_command(lambda: None, lambda: print('frozen', gc.get_freeze_count(), 'enabled',
                                               gc.isenabled()))
'''


def _report(repo, code: str, freeze: str | None) -> tuple[int, bool]:
    env = {k: v for k, v in os.environ.items() if k != 'VAE_JAX_GC_FREEZE'}
    if freeze is not None:
        env['VAE_JAX_GC_FREEZE'] = freeze
    proc = subprocess.run([sys.executable, '-c', code], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120)
    words = proc.stdout.split()
    assert words[-4::2] == ['frozen', 'enabled'], proc.stdout[-2000:] + proc.stderr[-2000:]
    return int(words[-3]), words[-1] == 'True'


@pytest.mark.parametrize('code', [LAUNCH, COMMAND], ids=['launch', 'command'])
def test_the_imports_are_frozen_and_the_collector_is_on(repo, code):
    frozen, enabled = _report(repo, code, None)
    assert frozen > 50_000 and enabled  # jax, flax, orbax: hundreds of thousands of objects
    frozen, enabled = _report(repo, code, '0')
    assert frozen == 0 and enabled      # VAE_JAX_GC_FREEZE=0: nothing, and the collector on


def test_the_switch():
    assert gc_freeze.enabled({})
    assert gc_freeze.enabled({'VAE_JAX_GC_FREEZE': '1'})
    for off in ('0', 'false', ' Off ', 'NO'):
        assert not gc_freeze.enabled({'VAE_JAX_GC_FREEZE': off})
