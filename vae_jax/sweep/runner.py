"""`run_sweep`: trains the points of a sweep one after the other, each in ROOT/<point name>.

A point is finished when its `sweep_status.json` says "done" (written only after
`train_and_evaluate` returned); finished points are skipped, anything else is (re)started and
`train_and_evaluate` resumes it from its latest checkpoint. A point that raises is recorded as
"failed" with the error, and the next point runs. Layout of a sweep root:

    sweep.json                 the config file and argument, command-line overrides, the points
    <name>/                    the point's ordinary workdir (config.json, metrics.jsonl, ...)
    <name>/sweep_status.json   {"status": "started" | "done" | "failed" | "preempted", ...}

A SIGTERM/SIGINT stops the sweep after the running point saved a checkpoint (`Preempted`
propagates); relaunching the sweep resumes that point.
"""

import contextlib
import copy
import dataclasses
import difflib
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from absl import logging

from vae_jax import train as train_lib, workdir as workdir_lib
from vae_jax.configs import validate
from vae_jax.errors import UserError
from vae_jax.points import Points
from vae_jax.preemption import Preempted
from vae_jax.steps import get_field
from vae_jax.sweep.define import Point
from vae_jax.sweep.status import (STATUS_FILE, Outcome, finished, now, read_status, refusal,
                                  started, write_json)
from vae_jax.sweep.rows import last_eval
from vae_jax.sweep.vmapped import run_group

SWEEP_FILE = 'sweep.json'


def apply_overrides(config, overrides: Mapping[str, Any]):
    """A copy of `config` (locked or not) with the dotted `overrides` set.

    Raises UserError for a field the config does not have or a value of the wrong type.
    """
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        parts = key.split('.')
        node = config
        for i, part in enumerate(parts):
            fields = list(node.keys()) if hasattr(node, 'keys') else []
            if part not in fields:
                close = difflib.get_close_matches(part, fields, n=1)
                hint = f' (did you mean {".".join(parts[:i] + close)!r}?)' if close else ''
                raise UserError(f'the config has no field {key!r}{hint}')
            if i < len(parts) - 1:
                node = node[part]
        if hasattr(node[parts[-1]], 'keys'):
            raise UserError(f'{key!r} is a group of fields; sweep one of its fields instead')
        if isinstance(node[parts[-1]], tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[parts[-1]] = value
        except (TypeError, ValueError) as e:
            raise UserError(f'cannot set {key}={value!r}: {e}') from None
    return config


def point_configs(config, points: Sequence[Point]) -> list:
    """The config of every point; UserError naming the first point whose overrides do not apply."""
    out = []
    for p in points:
        try:
            out.append(apply_overrides(config, p.overrides))
        except UserError as e:
            raise UserError(f'sweep point {p.index} ({p.name}): {e}') from None
    return out


def check_command_line(command_line: Mapping[str, Any], points: Sequence[Point]) -> None:
    """A --config.X override that the sweep also sets would be silently replaced: refuse it."""
    swept = {k for p in points for k in p.overrides}
    for key in command_line:
        if key in swept:
            raise UserError(f'--config.{key} is set on the command line and swept by the '
                            f'sweep; drop one of them')


def run_point(point: Point, config, workdir: Path, train_fn: Callable) -> Outcome:
    """Trains one point unless it is finished; never raises for a failing point."""
    status = read_status(workdir) or {}
    error = refusal(workdir, config)
    if error:
        logging.error('sweep point %d (%s): %s', point.index, point.name, error)
        return Outcome(point, 'failed', error=error)
    if finished(workdir, status, config):
        logging.info('sweep point %d (%s): finished before, skipped', point.index, point.name)
        return Outcome(point, 'done', skipped=True, wall_s=status.get('wall_s'))
    writer = workdir_lib.is_writer()
    with contextlib.ExitStack() as held:
        try:  # held around the bookkeeping too: a point that runs elsewhere keeps its status
            if writer:
                workdir_lib.prepare(workdir)
            held.enter_context(workdir_lib.lock(workdir))
        except UserError as e:
            logging.error('sweep point %d (%s): %s', point.index, point.name, e)
            return Outcome(point, 'failed', error=str(e))
        status = read_status(workdir) or {}
        record = started(point, status)
        logging.info('sweep point %d (%s): training in %s', point.index, point.name, workdir)
        start = time.perf_counter()
        try:
            if writer:
                write_json(workdir / STATUS_FILE, record)
            train_fn(config, str(workdir))
            outcome = Outcome(point, 'done')
        except Preempted:
            if writer:
                record.update(status='preempted', finished=now())
                write_json(workdir / STATUS_FILE, record)
            raise  # the sweep stops here; a relaunch resumes this point
        except Exception as e:  # any failure of one point must not stop the sweep
            error = str(e) if isinstance(e, UserError) else f'{type(e).__name__}: {e}'
            if isinstance(e, UserError):
                logging.error('sweep point %d (%s) failed: %s', point.index, point.name, error)
            else:
                logging.exception('sweep point %d (%s) failed', point.index, point.name)
            outcome = Outcome(point, 'failed', error=error)
        outcome.wall_s = time.perf_counter() - start
        record.update(status=outcome.status, finished=now(), wall_s=round(outcome.wall_s, 3),
                      error=outcome.error)
        if writer and workdir.is_dir():
            write_json(workdir / STATUS_FILE, record)
        return outcome


def run_sweep(config, points: Sequence[Point], root: str | os.PathLike, *,
              only: int | None = None, config_spec: str | None = None,
              command_line: Mapping[str, Any] | None = None,
              train_fn: Callable | None = None, vmap: bool = False) -> list[Outcome]:
    """Trains every point of the sweep (or only point `only`) under `root`, in order.

    Args:
      config: the base config; each point's overrides are applied to a copy of it.
      points: the sweep, as `expand` or `load_sweep` returns it.
      root: the sweep root; point p trains in root/<p.name>.
      only: the index of the one point to train (a job-array worker's share).
      config_spec, command_line: recorded in root/sweep.json ('experiments/vae.py:quick' and
        the --config.* overrides); command-line overrides of swept fields are refused.
      train_fn: `train_and_evaluate(config, workdir)` by default.
      vmap: train the selected points as one vmapped program (`sweep.vmapped`); they may
        differ only in scalar hyperparameters and seeds.

    Returns:
      One Outcome per point run. Raises UserError (before writing anything) for a bad index,
      an override of an unknown field, or an unusable root; failures of points are returned.
    """
    train_fn = train_fn or train_lib.train_and_evaluate
    command_line = dict(command_line or {})
    check_command_line(command_line, points)
    if only is not None and not 0 <= only < len(points):
        raise UserError(f'--sweep_index={only} is out of range: the sweep has {len(points)} '
                        f'points, 0 to {len(points) - 1}')
    configs = point_configs(config, points)
    selected = [only] if only is not None else range(len(points))
    if vmap and len(selected) > 1:  # a group that cannot be one program: refused before writes
        group = [configs[i] for i in selected]
        for c in group:
            validate(c)
        Points(group, vmapped=True)
    root = workdir_lib.prepare(root)
    if workdir_lib.is_writer():
        swept = dict.fromkeys(k for p in points for k in p.overrides)
        write_json(root / SWEEP_FILE, {
            'config': config_spec, 'command_line': command_line,
            'base': {k: get_field(config, k) for k in swept},  # where a point does not set k
            'points': [dataclasses.asdict(p) for p in points]})
    if vmap and len(selected) > 1:
        return run_group([points[i] for i in selected], [configs[i] for i in selected], root)
    outcomes = []
    for n, i in enumerate(selected):
        logging.info('sweep point %d of %d to run here: %s', n + 1, len(selected), points[i].name)
        outcomes.append(run_point(points[i], configs[i], root / points[i].name, train_fn))
    return outcomes


def format_outcomes(outcomes: Sequence[Outcome], root: str | os.PathLike) -> str:
    """One line per point (status, wall time, final eval -ELBO or the error), then a total."""
    width = max((len(o.point.name) for o in outcomes), default=0)
    lines = []
    for o in outcomes:
        if o.status == 'failed':
            detail = o.error
        else:
            ev = last_eval(Path(root) / o.point.name) or {}
            detail = (f'eval neg_elbo {ev["neg_elbo"]:.4g} at step {ev["step"]}'
                      if 'neg_elbo' in ev else '')
        state = 'skipped (done)' if o.skipped else o.status
        wall = f'{o.wall_s:8.1f} s' if o.wall_s is not None else ' ' * 10
        lines.append(f'[{o.point.index:3d}] {o.point.name:<{width}}  {state:<14} {wall}  {detail}')
    failed = sum(o.status == 'failed' for o in outcomes)
    lines.append(f'sweep {root}: {len(outcomes) - failed} of {len(outcomes)} points done, '
                 f'{failed} failed')
    return '\n'.join(lines)
