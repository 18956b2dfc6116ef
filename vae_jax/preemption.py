"""SIGTERM and SIGINT as requests to checkpoint and leave.

A TPU VM or Slurm job is told of its preemption by SIGTERM, a user stops a run with Ctrl-C.
While training, `StopRequest` catches both: the loop finishes the step it is in, saves a
checkpoint of it, and raises `Preempted`; a relaunch resumes from that checkpoint. A second
signal of the same kind acts as it would have without the handler (a hard stop).

With several processes, the flag of each is combined (`distributed.any_process`) at every log
step, so all processes stop, and save, at the same step.
"""

import signal
import threading

import jax
from absl import logging

from vae_jax import distributed

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped at `step` on a signal, after saving a checkpoint of that step."""

    def __init__(self, signum: int, step: int, errors: list | None = None):
        self.signum, self.step = signum, step
        self.errors = errors or []  # per point: None, or the divergence that stopped it
        super().__init__(f'stopped by {signal.Signals(signum).name} at step {step}; its '
                         f'checkpoint is saved; relaunch the same command to resume')

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by the signal


class StopRequest:
    """Context manager: catches SIGTERM/SIGINT while training (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> 'StopRequest':
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        logging.warning('%s received: saving a checkpoint after this step, then stopping '
                        '(send it again to stop at once)', signal.Signals(signum).name)
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def requested(self, at_log_step: bool) -> bool:
        """Whether to stop after this step: every step with one process; at log steps, agreed
        by all processes, with several."""
        if jax.process_count() == 1:
            return self.signum is not None
        if not at_log_step:
            return False
        stop = distributed.any_process(self.signum is not None)
        if stop and self.signum is None:
            self.signum = signal.SIGTERM  # another process was told
        return stop
