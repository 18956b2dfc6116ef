"""Several JAX processes (hosts) training one model: start-up and cross-process checks.

`maybe_initialize()` must run before anything touches a JAX backend. It calls
`jax.distributed.initialize()` exactly when the environment describes a multi-process job:

- `JAX_COORDINATOR_ADDRESS` is set (with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, which JAX
  itself does not read from the environment; on a cluster JAX detects they may be left out);
- a Cloud TPU VM, unless JAX_PLATFORMS excludes 'tpu' (JAX detects the slice's workers from
  the VM metadata; a one-worker slice becomes a one-process job, which is harmless);
- a Slurm step (`srun`) with several tasks, or an Open MPI job with several ranks (JAX reads
  their variables). A Slurm job array of one-task jobs (`--sweep_index=$SLURM_ARRAY_TASK_ID`)
  stays single-process.

What this codebase does across processes: every process runs the same program on its own data
shard (`data.pipeline`: process p reads rows p*B/P ... (p+1)*B/P - 1 of each global batch of B);
the pmapped steps map over the devices of *all* processes (`pmap_devices`), so `pmean`/`psum`
are global; only process 0 writes metrics, images, config.json and results
(`workdir.is_writer`); every process calls the checkpoint manager and process 0 alone writes the
arrays (`workdir.Checkpoints`). The workdir must be one directory that every process sees
(`check_shared_dir`).
"""

import importlib
import os
import secrets
from pathlib import Path
from typing import Sequence

import jax
import numpy as np
from absl import logging

from vae_jax.errors import UserError

MODES = ('auto', 'on', 'off')


def _int_env(environ, name: str) -> int | None:
    value = environ.get(name)
    if value in (None, ''):
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f'{name}={value!r} is not an integer') from None


def _on_cloud_tpu_vm() -> bool:
    """JAX's own answer (it probes the TPU chips when `jax` is imported); False if unknown."""
    try:
        return bool(importlib.import_module('jax._src.cloud_tpu_init').running_in_cloud_tpu_vm)
    except (ImportError, AttributeError):
        return False


def requested(environ=os.environ, on_tpu_vm: bool | None = None) -> str | None:
    """Why this process belongs to a multi-process job, or None when it runs alone."""
    if environ.get('JAX_COORDINATOR_ADDRESS'):
        return f'JAX_COORDINATOR_ADDRESS={environ["JAX_COORDINATOR_ADDRESS"]}'
    # The step's task count, set by srun: a batch script's own SLURM_NTASKS counts tasks that
    # only its srun steps start.
    if (_int_env(environ, 'SLURM_STEP_NUM_TASKS') or 1) > 1:
        return 'a Slurm step with several tasks'
    if (_int_env(environ, 'OMPI_COMM_WORLD_SIZE') or 1) > 1:
        return 'an Open MPI job with several ranks'
    platforms = environ.get('JAX_PLATFORMS', '')
    if (not platforms or 'tpu' in platforms) and (
            _on_cloud_tpu_vm() if on_tpu_vm is None else on_tpu_vm):
        return 'a Cloud TPU VM'
    return None


def maybe_initialize(mode: str = 'auto', environ=os.environ) -> bool:
    """Calls `jax.distributed.initialize()` if `mode` is 'on', or 'auto' and `requested()`.

    Call it first thing in a program (launch.py's main does), before any computation, device
    query or `jax.process_index()`: JAX refuses to initialize once its backend exists.
    Returns whether this call initialized the distributed runtime.

    Raises:
      UserError: the environment asks for it but does not say enough (e.g. only
        JAX_COORDINATOR_ADDRESS), or initialization failed (a coordinator that cannot be reached).
    """
    if mode not in MODES:
        raise UserError(f'distributed mode {mode!r} is not one of {", ".join(MODES)}')
    reason = 'requested with mode "on"' if mode == 'on' else requested(environ)
    if mode == 'off' or reason is None or jax.distributed.is_initialized():
        return False
    kwargs = {}
    if environ.get('JAX_COORDINATOR_ADDRESS'):  # JAX reads the address, not these two
        kwargs = dict(num_processes=_int_env(environ, 'JAX_NUM_PROCESSES'),
                      process_id=_int_env(environ, 'JAX_PROCESS_ID'))
    logging.info('initializing the JAX distributed runtime (%s)', reason)
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise UserError(
            f'jax.distributed.initialize() failed for {reason}: {e} (an explicit job sets '
            f'JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every '
            f'process; --distributed=off runs a single process)') from None
    logging.info('process %d of %d: %d local devices of %d (%s)', jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(),
                 jax.devices()[0].platform)
    return True


def require_single_process(what: str) -> None:
    """UserError if this is one of several processes: for code that does not shard its work."""
    if jax.process_count() > 1:
        raise UserError(f'{what} runs in a single process, not {jax.process_count()}: run it on '
                        f'one machine with --distributed=off (on a TPU VM also JAX_PLATFORMS=cpu)')


def pmap_devices(local_devices: Sequence[jax.Device]) -> list[jax.Device]:
    """The `devices=` of a pmap whose collectives span every process.

    pmap's collectives only reach the devices it maps over, and with several processes its
    `devices` must be the same list on all of them (each maps over its own local ones): a
    pmap over `jax.local_devices()` would `pmean` within each host and the hosts' parameters
    would drift apart. So with several processes every local device takes part.
    """
    local_devices = list(local_devices)
    if jax.process_count() == 1:
        return local_devices
    if set(local_devices) != set(jax.local_devices()):
        raise UserError(f'with {jax.process_count()} processes each one trains on all its '
                        f'{jax.local_device_count()} local devices, not {len(local_devices)}')
    return jax.devices()


def check_shared_dir(path: Path) -> None:
    """Raises UserError on every process unless all of them see `path` as one directory.

    Checkpoints, resumption and sweep bookkeeping read files that process 0 wrote; a workdir on
    each host's own disk would let the processes disagree about where to resume, and their
    collectives would then wait for each other forever. A no-op with one process.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils
    token = int(multihost_utils.broadcast_one_to_all(
        np.int32(secrets.randbits(31) if jax.process_index() == 0 else 0)))
    probe = path / f'.shared_dir_check_{token}'
    if jax.process_index() == 0:
        probe.write_text(str(token))
    multihost_utils.sync_global_devices(f'vae_jax shared dir written {token}')
    try:
        sees = probe.read_text() == str(token)
    except OSError:
        sees = False
    seen = multihost_utils.process_allgather(np.int32(sees))
    if jax.process_index() == 0:
        probe.unlink()
    if not np.all(seen):
        blind = [int(i) for i in np.flatnonzero(np.asarray(seen) == 0)]
        raise UserError(f'processes {blind} do not see the files process 0 writes in {path}: '
                        f'with several processes the workdir must be on a filesystem all hosts '
                        f'share (the same path everywhere; see the README, Multi-host)')


def barrier(name: str) -> None:
    """Every process waits here for the others (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(f'vae_jax {name}')


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is true on any of them (a collective with several)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
