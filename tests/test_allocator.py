"""allocator.tune: freed memory is kept for reuse, so allocating the same large buffer again
(what XLA:CPU does every step) takes no new page faults."""

import os
import subprocess
import sys

import pytest

from vae_jax import allocator

PROBE = '''
import resource
import numpy as np
import vae_jax  # tunes the allocator unless VAE_JAX_MALLOC=0
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = np.ones(64 * 2**20 // 8)  # 64 MB, written once, freed
    del buffer
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[1:]))
'''


def _faults_after_the_first(env):
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True,
                         env=env, check=True)
    return int(out.stdout.split()[-1])


def test_a_freed_buffer_is_reused_without_page_faults():
    if not allocator.tune(environ={}):
        pytest.skip('the C library is not glibc')
    tuned = _faults_after_the_first(dict(os.environ, VAE_JAX_MALLOC='1'))
    default = _faults_after_the_first(dict(os.environ, VAE_JAX_MALLOC='0'))
    assert default >= 100, default  # glibc's default maps and unmaps it each time
    assert tuned < 20, tuned


def test_off_switch():
    assert allocator.tune(environ={'VAE_JAX_MALLOC': '0'}) is False
