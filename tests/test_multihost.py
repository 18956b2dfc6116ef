"""Multi-process training: 2 processes × 2 fake CPU devices, through launch.py, on localhost.

They talk through `jax.distributed` (coordinator on a free local port) and JAX's gloo CPU
collectives, as the hosts of a TPU slice do through theirs. The run must equal one process with
4 devices on the same global batch, write its metrics once, checkpoint from process 0 alone,
and resume from that checkpoint in both processes.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import toy2d
from vae_jax import distributed, train
from vae_jax.checkpoints import Checkpoints
from vae_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = {'eval_every': 15, 'checkpoint_every': 5, 'log_every': 5, 'eval_examples': 512}


def _gloo_available() -> bool:
    try:
        from jax._src.lib import _jax
    except ImportError:
        return False
    return hasattr(_jax, 'make_gloo_tcp_collectives')


needs_gloo = pytest.mark.skipif(
    not _gloo_available(),
    reason="this jaxlib has no gloo CPU collectives, so processes cannot pmean across each other")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def _launch_two(workdirs, steps: int, xla_flags,
                fault_1: str | None = None) -> list[tuple[int, str]]:
    """Runs launch.py as processes 0 and 1 of one job; returns (exit status, output) of each.

    `fault_1`: a fault of tests/fault_launch.py injected into process 1 only.
    """
    env = dict(os.environ, XLA_FLAGS=xla_flags(2),
               JAX_PLATFORMS='cpu', JAX_COORDINATOR_ADDRESS=f'localhost:{_free_port()}',
               JAX_NUM_PROCESSES='2', PYTHONPATH=str(REPO))
    flags = [f'--config=experiments/toy2d.py:steps={steps}',
             *(f'--config.{k}={v}' for k, v in OVERRIDES.items())]
    logs = [Path(workdirs[0]).parent / f'process{i}.log' for i in range(2)]
    procs = []
    try:
        for i in range(2):  # to files: a full pipe would stall one process and so both
            faulty = {'VAE_JAX_FAULT': fault_1} if fault_1 and i == 1 else {}
            script = 'tests/fault_launch.py' if faulty else 'launch.py'
            with logs[i].open('w') as log:
                procs.append(subprocess.Popen(
                    [sys.executable, script, *flags, f'--workdir={workdirs[i]}'], cwd=REPO,
                    env=dict(env, JAX_PROCESS_ID=str(i), **faulty), stdout=log,
                    stderr=subprocess.STDOUT))
        return [(p.wait(timeout=300), log.read_text()) for p, log in zip(procs, logs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


@needs_gloo
def test_two_processes_equal_one_process_and_resume(tmp_path, xla_flags):
    # 2 processes train toward 15 steps; process 1 alone gets SIGTERM at step 7: both agree at
    # the next log step (10), save it and exit; a second launch resumes both to 15.
    two = tmp_path / 'two'
    results = _launch_two([two, two], 15, xla_flags, fault_1='term_at_step=7')
    for i, (status, output) in enumerate(results):
        assert status == 143, f'process {i}:\n{output[-3000:]}'
        assert 'stopped by SIGTERM at step 10' in output and 'Traceback' not in output
    results = _launch_two([two, two], 15, xla_flags)
    for i, (status, output) in enumerate(results):
        assert status == 0, f'process {i} failed:\n{output[-3000:]}'
    assert 'process 1 of 2: 2 local devices of 4' in results[1][1]
    assert all('resumed from' in out and 'at step 10' in out for _, out in results)

    # One process with 4 devices, the same global batches, 15 steps in one go.
    config = toy2d.get_config('steps=15')
    config.update_from_flattened_dict(OVERRIDES)
    one = train.train_and_evaluate(config, tmp_path / 'one', devices=jax.local_devices()[:4])

    # Metrics: written once (process 0), the same records as one process; values equal up to
    # the order of the floating-point sums of the cross-process all-reduce.
    got, want = _records(two), _records(tmp_path / 'one')
    assert [(r['step'], r['split']) for r in got] == [(r['step'], r['split']) for r in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([g[k] for k in w if k not in ('step', 'split')],
                                   [w[k] for k in w if k not in ('step', 'split')], rtol=2e-6)
    assert (two / 'config.json').is_file() and (two / 'run.json').is_file()

    # The checkpoint: arrays written by process 0 only; it restores to one process's parameters.
    assert sorted(p.name for p in (two / 'checkpoints' / '15' / 'state').glob('ocdbt.process_*')) \
        == ['ocdbt.process_0']
    ckpt = Checkpoints(two, keep=3, read_only=True)
    restored = ckpt.read(jax.device_get(one), 15)
    ckpt.close()
    assert int(restored.step) == 15
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@needs_gloo
def test_workdirs_that_are_not_shared_are_refused_on_every_process(tmp_path, xla_flags):
    results = _launch_two([tmp_path / 'host0', tmp_path / 'host1'], 5, xla_flags)
    for status, output in results:
        assert status == 2
        assert 'do not see the files process 0 writes' in output.splitlines()[-1]
    assert not any((tmp_path / d / 'checkpoints').exists() for d in ('host0', 'host1'))


@pytest.mark.parametrize('environ, on_tpu_vm, wanted', [
    ({}, False, False),
    ({'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'}, False, True),
    ({'SLURM_STEP_NUM_TASKS': '1', 'SLURM_PROCID': '0'}, False, False),  # a job-array task
    ({'SLURM_NTASKS': '4'}, False, False),  # a batch script, outside its srun steps
    ({'SLURM_STEP_NUM_TASKS': '4', 'SLURM_NTASKS': '4', 'SLURM_PROCID': '2'}, False, True),
    ({'OMPI_COMM_WORLD_SIZE': '1'}, False, False),
    ({'OMPI_COMM_WORLD_SIZE': '8'}, False, True),
    ({}, True, True),
    ({'JAX_PLATFORMS': 'cpu'}, True, False),  # e.g. evaluating on a TPU VM's CPU
])
def test_requested(environ, on_tpu_vm, wanted):
    assert (distributed.requested(environ, on_tpu_vm=on_tpu_vm) is not None) == wanted


def test_maybe_initialize_does_nothing_when_not_asked():
    assert not distributed.maybe_initialize('off', {'JAX_COORDINATOR_ADDRESS': 'localhost:1'})
    if distributed.requested({}) is None:  # not on a TPU VM
        assert not distributed.maybe_initialize('auto', {})
    with pytest.raises(UserError, match='not one of'):
        distributed.maybe_initialize('yes', {})
    with pytest.raises(UserError, match='JAX_NUM_PROCESSES'):
        distributed.maybe_initialize('auto', {'JAX_COORDINATOR_ADDRESS': 'localhost:1',
                                              'JAX_NUM_PROCESSES': 'two'})


def test_single_process_helpers_are_no_ops(tmp_path):
    devices = jax.local_devices()[:2]
    assert distributed.pmap_devices(devices) == devices
    distributed.check_shared_dir(tmp_path)
    distributed.require_single_process('this')
    assert list(tmp_path.iterdir()) == []


def test_importing_the_library_starts_no_jax_backend():
    """jax.distributed.initialize() must come before any backend exists; launch.py imports all
    of vae_jax before calling it, so a module-level jnp constant would break multi-host runs."""
    code = ('import launch, vae_jax.sweep, vae_jax.evaluate.report; '
            'from jax._src import xla_bridge; assert not xla_bridge.backends_are_initialized()')
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
