"""allocator.tune: freed memory is kept for reuse, so allocating the same large buffer again
(what XLA:CPU does every step) takes no new page faults, in the main thread and in another one
(where XLA:CPU runs its executables)."""

import os
import subprocess
import sys

import pytest

from vae_jax import allocator

PROBE = '''
import resource, sys, threading
import numpy as np
import vae_jax  # tunes the allocator unless VAE_JAX_MALLOC=0
faults = []

def allocate():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffer = np.ones(int(sys.argv[1]) * 2**20 // 8)  # written once, freed
        del buffer
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

if sys.argv[2] == 'main':
    allocate()
else:  # another thread, as XLA:CPU's executables run; its own heap would hold 64 MiB at most
    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
print(max(faults[1:]))
'''


def _faults_after_the_first(env, mib, thread):
    out = subprocess.run([sys.executable, '-c', PROBE, str(mib), thread], capture_output=True,
                         text=True, env=env, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize('mib,thread', [(96, 'main'), (96, 'other')])
def test_a_freed_buffer_is_reused_without_page_faults(mib, thread):
    if not allocator.tune(environ={}):
        pytest.skip('the C library is not glibc')
    tuned = _faults_after_the_first(dict(os.environ, VAE_JAX_MALLOC='1'), mib, thread)
    default = _faults_after_the_first(dict(os.environ, VAE_JAX_MALLOC='0'), mib, thread)
    # glibc's default maps and unmaps it each time: a fault per page, or per 2 MiB where numpy
    # asks for transparent huge pages.
    assert default >= mib // 4, default
    assert tuned < 10, tuned


def test_off_switch():
    assert allocator.tune(environ={'VAE_JAX_MALLOC': '0'}) is False
