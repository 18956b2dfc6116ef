"""One sweep point's bookkeeping in its workdir: `sweep_status.json` and whether it is finished.

    <name>/sweep_status.json   {"status": "started" | "done" | "failed" | "preempted",
                                "attempts": n, "started": ..., "finished": ..., "error": ...}

Shared by the sequential runner (`runner.run_point`) and vmapped groups (`vmapped.run_group`).
"""

import dataclasses
import json
import time
from pathlib import Path

from vae_jax import workdir as workdir_lib
from vae_jax.configs import base_config
from vae_jax.errors import UserError
from vae_jax.sweep.define import Point

STATUS_FILE = 'sweep_status.json'


@dataclasses.dataclass
class Outcome:
    point: Point
    status: str              # 'done' | 'failed'  ('preempted' propagates as an exception)
    skipped: bool = False    # finished by an earlier invocation
    wall_s: float | None = None
    error: str | None = None


def write_json(path: Path, data: dict) -> None:
    """Atomically (several job-array workers may write the same sweep.json)."""
    workdir_lib.write_atomic(path, json.dumps(data, indent=2, default=str) + '\n')


def read_status(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def refusal(workdir: Path, config) -> str | None:
    """Why `workdir` cannot train `config` (it holds a run of another config), or None."""
    try:
        workdir_lib.check_relaunch(workdir_lib.check(workdir), config, base_config(),
                                   allow_change=False)
    except UserError as e:
        return f'{e}; delete it or use another sweep root'
    return None


def finished(workdir: Path, status: dict, config) -> bool:
    """The point is done and its config is exactly `config` (an allowed change, such as more
    steps or other eval settings, makes it run again: training resumes where it stopped)."""
    if status.get('status') != 'done':
        return False
    try:
        return not workdir_lib.changes(workdir_lib.read_config(workdir, base_config()), config)
    except UserError:
        return False


def started(point: Point, previous: dict, **extra) -> dict:
    """The status record of an attempt starting now (`previous`: the point's last status)."""
    return {'index': point.index, 'name': point.name, 'overrides': point.overrides,
            'status': 'started', 'attempts': previous.get('attempts', 0) + 1, 'started': now(),
            'finished': None, 'wall_s': None, 'error': None, **extra}


def now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')
