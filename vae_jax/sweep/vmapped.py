"""Vmapped sweeps: points that differ only in scalar hyperparameters and seeds, as one program.

The training loop (`train.train_points`) stacks the points' train states along a leading axis and
`jax.vmap`s the train step over it, so one compiled step trains every point. Each point keeps
what it would have alone: its seed's keys and data order, its own hyperparameters (the step's
traced `hparams`, `steps.hparam_names`), and its own workdir with checkpoints, metrics.jsonl,
TensorBoard events, images and results. A point whose loss becomes NaN is stopped and reported
while the others go on (the vmapped lanes are independent). Here: the sweep bookkeeping.

    python launch.py --config=experiments/toy2d.py --sweep --sweep_vmap --workdir=runs/sweep

Why it is faster: a small model leaves a device mostly idle (per-op dispatch, small matmuls,
one step at a time); stacking P points makes every matmul P times larger for one dispatch.
"""

import contextlib
import time
from pathlib import Path
from typing import Sequence

from absl import logging

from vae_jax import workdir as workdir_lib
from vae_jax.errors import UserError
from vae_jax.preemption import Preempted
from vae_jax.sweep import status as status_lib
from vae_jax.train import train_points


def run_group(points: Sequence, configs: Sequence, root: Path, devices=None) -> list:
    """`runner.run_point` for many points at once: skips finished ones, trains the rest
    together with `train.train_points`, and records each point's status."""
    outcomes, todo = {}, []
    for point, config in zip(points, configs):
        workdir = Path(root) / point.name
        status = status_lib.read_status(workdir) or {}
        refused = status_lib.refusal(workdir, config)
        if refused:
            outcomes[point.index] = status_lib.Outcome(point, 'failed', error=refused)
        elif status_lib.finished(workdir, status, config):
            outcomes[point.index] = status_lib.Outcome(point, 'done', skipped=True,
                                                       wall_s=status.get('wall_s'))
        elif status.get('diverged'):
            # Back in the group it would rewind every point to its last checkpoint, and
            # diverge again: it is retried alone.
            outcomes[point.index] = status_lib.Outcome(point, 'failed', error=(
                f'{status["error"]}; a vmapped group does not retry a diverged point: run it '
                f'alone (--sweep_index={point.index} without --sweep_vmap)'))
        else:
            todo.append((point, config, workdir, status))
    with contextlib.ExitStack() as held:
        todo = _lock_points(todo, held, outcomes)
        _train_group(todo, outcomes, devices)
    return [outcomes[p.index] for p in points]


def _lock_points(todo: list, held: contextlib.ExitStack, outcomes: dict) -> list:
    """The points of `todo` whose workdir this process could lock (held until `held` exits);
    the others (running elsewhere) are reported failed, their status files left alone."""
    locked = []
    for item in todo:
        point, workdir = item[0], item[2]
        try:
            if workdir_lib.is_writer():
                workdir_lib.prepare(workdir)
            held.enter_context(workdir_lib.lock(workdir))
            locked.append(item)
        except UserError as e:
            outcomes[point.index] = status_lib.Outcome(point, 'failed', error=str(e))
    return locked


def _train_group(todo: list, outcomes: dict, devices) -> None:
    if todo:
        records = []
        for point, _, workdir, status in todo:
            records.append(status_lib.started(point, status, vmapped=len(todo)))
            if workdir_lib.is_writer():
                status_lib.write_json(workdir / status_lib.STATUS_FILE, records[-1])
        logging.info('training %d sweep points as one vmapped program', len(todo))
        start = time.perf_counter()
        group_error = None
        try:
            _, errors = train_points([t[1] for t in todo], [t[2] for t in todo], devices)
        except UserError as e:  # the group as a whole could not run
            group_error = str(e)
            errors = [group_error] * len(todo)
        except Preempted as e:
            for (point, _, workdir, _), record, error in zip(todo, records, e.errors):
                if workdir_lib.is_writer():
                    record.update(status='failed' if error else 'preempted',
                                  finished=status_lib.now(), error=error, diverged=bool(error))
                    status_lib.write_json(workdir / status_lib.STATUS_FILE, record)
            raise
        wall = time.perf_counter() - start
        diverged = not group_error
        for (point, _, workdir, _), record, error in zip(todo, records, errors):
            outcome = status_lib.Outcome(point, 'failed' if error else 'done', wall_s=wall,
                                         error=error)
            record.update(status=outcome.status, finished=status_lib.now(),
                          wall_s=round(wall, 3), error=error, diverged=bool(error and diverged))
            if workdir_lib.is_writer():
                status_lib.write_json(workdir / status_lib.STATUS_FILE, record)
            outcomes[point.index] = outcome
