"""The C allocator's settings for a training process: keep freed memory for reuse instead of
returning it to the operating system after every step.

XLA:CPU allocates each executable's temporary buffers (tens of MB for a conv train step) with
malloc and frees them when the call ends. glibc serves requests that large with a fresh `mmap`
and gives them back with `munmap`, so every page of them faults again on the next step: the
conv β-VAE's train step (batch 64, 64×64) took 17,731 minor page faults and 33.9 ms of kernel
CPU time per step, 88.5 ms in all; with `tune()` 1 fault, 1.9 ms and 76.5 ms (medians of 3
fresh processes each, 2-core Intel Xeon: `python benchmarks/allocator.py`). The MLP step's buffers are
small enough for glibc's heap already: no faults, no change.

`tune()` (called when vae_jax is imported) sets glibc's `M_MMAP_MAX` to 0, so that malloc serves
every request from its heaps; `M_ARENA_MAX` to 1, so that every thread allocates from the main
heap, which grows without bound (XLA:CPU runs executables on its own threads, and another
thread's heap holds at most 64 MiB: a larger request there, e.g. the conv β-VAE step's buffers
since its last decoder layer became a matmul, gets its own mapping again: 18,700 faults and
50 ms of kernel time per step in a one-off measurement before this limit); and
`M_TRIM_THRESHOLD` to 2 GiB, so that free keeps up to that much at the top of the heap instead
of trimming it. Memory a process has freed then stays
mapped to it: its resident size stays near its peak, which is what a training process sizes
for anyway. Everything in the process allocates this way, PyTorch too if it shares the process.

`VAE_JAX_MALLOC=0` leaves the allocator as it is; it applies only where the C library is glibc.
"""

import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: 2 GiB


def tune(environ=os.environ) -> bool:
    """Sets glibc's malloc to keep freed memory (see the module docstring); returns whether it
    did (False: VAE_JAX_MALLOC=0, not glibc, or glibc refused)."""
    if environ.get('VAE_JAX_MALLOC', '1').strip().lower() in ('0', 'false', 'off', 'no'):
        return False
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = getattr(ctypes.CDLL(None), 'mallopt', None)  # the process's own C library
    if mallopt is None:
        return False
    return (mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_ARENA_MAX, 1) == 1
            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
