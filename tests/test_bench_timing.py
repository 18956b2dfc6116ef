"""benchmarks/timing.py's machine-speed probe and benchmarks/end_to_end.py's use of it."""

import time

import pytest


@pytest.fixture(scope='module')
def bench(benchmark):
    return benchmark('timing'), benchmark('end_to_end')


def test_python_rate_is_the_loops_measured_rate(bench):
    timing, _ = bench
    rate = timing.python_rate(seconds=0.1)
    # The same loop, timed directly: its best of 3 must agree to within the machine's noise.
    n = 2_000_000
    best = float('inf')
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(n):
            total += i & 7
        best = min(best, time.perf_counter() - t0)
    assert 0.5 < rate / (n / best / 1e6) < 2.0, (rate, n / best / 1e6)


def test_machine_speed_runs_in_a_fresh_process(bench):
    _, end_to_end = bench
    import os
    speed = end_to_end.machine_speed(dict(os.environ))
    assert set(speed) == {'matmul_gflops', 'python_mloops'}
    # A 2-core CPU does 2048² float32 matmuls at tens to hundreds of GFLOP/s; anything else
    # would mean the FLOP count or the timing is off by orders of magnitude.
    assert 5 < speed['matmul_gflops'] < 1e5, speed
    assert 1 < speed['python_mloops'] < 1e4, speed
