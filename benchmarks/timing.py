"""Timing helpers shared by the benchmarks: rates of timed blocks and the machine's other load."""

import os
import statistics
import time


def busy_cpu_s():
    """(CPU seconds used by the whole machine, by this process) so far; machine is None off Linux.

    Their difference is what other processes took while we timed: on a shared 2-core machine
    that is the main source of noise, and it hits PyTorch's OpenMP threads hardest.
    """
    own = sum(os.times()[:2])
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None, own
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK'), own


def timed(run, n, load=None):
    """Calls/s of `run(n)` (which must block); appends other processes' cores to `load`."""
    machine0, own0 = busy_cpu_s()
    t0 = time.perf_counter()
    run(n)
    dt = time.perf_counter() - t0
    machine1, own1 = busy_cpu_s()
    if load is not None and machine0 is not None:
        load.append(max(0.0, (machine1 - machine0) - (own1 - own0)) / dt)
    return n / dt


def block_size(run, seconds):
    """How many calls of `run` take about `seconds` (at least 3), from a short trial."""
    n = 2
    while (rate := timed(run, n)) * 0.25 > n:  # grow until a trial takes >= 0.25 s
        n *= 2
    return max(3, int(seconds * rate))


def load_warning(loads, limit=0.2):
    """A warning line if other processes used more than `limit` cores in any block, else ''."""
    busiest = max(loads, default=0.0)
    if busiest <= limit:
        return ''
    return (f'WARNING: other processes used up to {busiest:.2f} cores during a timed block; '
            'the numbers are noisy, rerun on an idle machine.')


def python_rate(seconds=0.3):
    """Millions of iterations/s of a plain Python loop (best of 3 blocks of ~`seconds`): how
    fast this machine runs interpreted code now, the part of a job that no library speeds up."""
    def run(n):
        total = 0
        for i in range(n):
            total += i & 7
        return total

    n = block_size(lambda k: run(k * 10_000), seconds) * 10_000
    return max(timed(run, n) for _ in range(3)) / 1e6


def wait_for_idle(max_wait_s, limit=0.2):
    """Waits (at most `max_wait_s`) until other processes use under `limit` cores for 0.5 s."""
    deadline = time.perf_counter() + max_wait_s
    while time.perf_counter() < deadline:
        machine0, own0 = busy_cpu_s()
        if machine0 is None:
            return
        time.sleep(0.5)
        machine1, own1 = busy_cpu_s()
        if ((machine1 - machine0) - (own1 - own0)) / 0.5 < limit:
            return


def measure(runners, rounds, block_s, loads):
    """{key: median seconds per call} of each `run(n)` in `runners` ({key: run}): warmed up,
    sized to ~`block_s` blocks, then timed over `rounds` rounds whose order alternates."""
    blocks = {}
    for key, run in runners.items():
        run(2)  # compile / warm up
        wait_for_idle(3)
        blocks[key] = block_size(run, block_s)
    per_call = {key: [] for key in runners}
    for r in range(rounds):
        for key in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
            wait_for_idle(3)
            per_call[key].append(1 / timed(runners[key], blocks[key], loads))
    return {key: statistics.median(v) for key, v in per_call.items()}


def blocking_calls(f, *args):
    """run(n): n calls of the JAX function f(*args), then a wait for the last result."""
    import jax  # here, so that the PyTorch-only benchmarks need not start JAX

    def run(n):
        for _ in range(n):
            out = f(*args)
        jax.block_until_ready(out)
    return run
