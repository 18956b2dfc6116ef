"""`launch.py` with a fault injected, for the reliability tests and the kill-and-resume soak.

    VAE_JAX_FAULT=kill_in_save=N  python tests/fault_launch.py --config=... --workdir=...

Faults (one, from the environment):
  kill_in_save=N   SIGKILL this process right after the N-th checkpoint save has started (orbax
                   is writing it asynchronously); in a vmapped group each point's save counts.
  kill_after_save=N  SIGKILL right after the N-th save has finished writing.
  term_at_step=S   send this process SIGTERM while it trains step S (a preemption notice).
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app  # noqa: E402

import launch  # noqa: E402
from vae_jax import checkpoints  # noqa: E402
from vae_jax.data import pipeline  # noqa: E402


def install(fault: str) -> None:
    kind, _, value = fault.partition('=')
    n = int(value)
    if kind in ('kill_in_save', 'kill_after_save'):
        save, calls = checkpoints.Checkpoints.save, []

        def killing_save(self, step, state):
            save(self, step, state)
            calls.append(step)
            if len(calls) == n:
                if kind == 'kill_after_save':
                    self.wait()
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoints.Checkpoints.save = killing_save
    elif kind == 'term_at_step':
        batches = pipeline.train_batches

        def terminating_batches(*args, start_step, **kwargs):
            for step, batch in enumerate(batches(*args, start_step=start_step, **kwargs),
                                         start_step + 1):
                if step == n:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield batch
        pipeline.train_batches = terminating_batches
    else:
        raise ValueError(f'unknown fault {fault!r}')


if __name__ == '__main__':
    if os.environ.get('VAE_JAX_FAULT'):
        install(os.environ['VAE_JAX_FAULT'])
    app.run(launch.main, flags_parser=launch._parse_flags)
