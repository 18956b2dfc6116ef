"""A workdir is a contract: one run, its config, who holds it, and the history of its launches.

Layout of a workdir:
    config.json            the config now in force (history.jsonl says since which step)
    history.jsonl          one line per launch: step resumed from, config changes, host, time,
                           the XLA_FLAGS it ran with, the build of vae_jax's CPU kernels it
                           loaded, if any (`native.in_use`)
    .lock                  held (flock) by the process training here; names the holder
    metrics.jsonl          one JSON object per logged step: {"step": s, "split": ..., ...}
    events.out.tfevents.*  the same scalars (and image grids) for TensorBoard
    checkpoints/<step>/    orbax checkpoints, the last `keep_checkpoints` kept
    checkpoints_set_aside/ checkpoints skipped on restore: damaged, or ahead of a group's others
    images/                PNG grids written at each eval

A relaunch must train what the workdir already trained: `check_relaunch` refuses a config that
differs in anything that changes the model or its training (see `ALLOWED`), before anything is
written. Only process 0 writes the config, history, metrics and images.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import ml_collections

from vae_jax import distributed, native
from vae_jax.errors import UserError

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'history.jsonl'
LOCK_FILE = '.lock'

# Config fields whose change does not alter what is trained: where and how often a run reports,
# evaluates and checkpoints, and the XLA flags and steps per call it runs with (rounding only,
# as another machine).
# A dotted prefix ending in '.' covers a whole group.
ALLOWED = ('log_every', 'eval_every', 'checkpoint_every', 'keep_checkpoints', 'eval_batch_size',
           'eval_examples', 'num_image_examples', 'data.data_dir', 'data.eval_split', 'eval.',
           'disentanglement.', 'xla_cpu_flags', 'steps_per_execution')
# The run's length: may change when the learning-rate schedule does not depend on it.
LENGTH = ('num_steps', 'num_epochs')
# Fields added to the config with a default that differs from what runs saved before them
# trained: {field: (the value such a run has when its config.json lacks the field, and
# {field: value} that the saved config must hold for that to apply)}.
FORMER_DEFAULTS = {'model.upsample': ('subpixel', {'model.encoder': 'conv'})}


def check(workdir: str | os.PathLike) -> Path:
    """Raises UserError if `workdir` cannot hold a run; writes nothing. Returns it as a Path."""
    path = Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f'workdir {path} exists and is not a directory')
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f'workdir {path} cannot be created: {parent} is a file')
    if path.exists() and not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f'workdir {path} is not writable')
    return path


def prepare(workdir: str | os.PathLike) -> Path:
    """Checks that `workdir` can hold a run, creates it if needed, and returns it as a Path."""
    path = check(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'cannot create workdir {path}: {e.strerror}') from None
    return path


def is_writer() -> bool:
    return jax.process_index() == 0


def write_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_HELD: set[Path] = set()  # workdirs this process holds: a nested `lock` is a no-op


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """Holds `path/.lock` for the duration.

    An flock, taken by process 0 (the others share its workdir and learn the outcome, so all
    go on or all stop): the kernel releases it when the process exits in any way (kill -9
    included), so a crashed run leaves no stale lock. Another holder gives one UserError
    naming it. Reentrant within a process (a sweep point holds it around its training); every
    process must call it for the same paths in the same order.
    """
    path = Path(path).absolute()
    if path in _HELD:
        yield
        return
    fd, failure = None, None
    if is_writer():
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors='replace').strip() or 'another process'
            failure = (f'{path} is in use by {holder}; wait for it to finish or stop it (a '
                       f'workdir holds one run at a time)')
    try:
        if distributed.any_process(failure is not None):
            raise UserError(failure or f'{path} is in use (process 0 could not lock it)')
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (f'pid {os.getpid()} on {socket.gethostname()} since '
                           f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n').encode(), 0)
        _HELD.add(path)
        try:
            yield
        finally:
            _HELD.discard(path)
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def newest_checkpoint(workdir: Path) -> int | None:
    """The newest step under workdir/checkpoints by its name (not verified), or None."""
    steps = [int(p.name) for p in (Path(workdir) / 'checkpoints').glob('*') if p.name.isdigit()]
    return max(steps, default=None)


def read_config(workdir: Path, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The workdir's config.json merged into `base` (fields added since take their defaults,
    or the value in FORMER_DEFAULTS).

    Raises UserError if it is missing or not a config.
    """
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f'{workdir} is not a vae_jax run: {path} not found')
    try:
        saved = json.loads(path.read_text())
        _merge(base, saved)
        fields = _flatten_json(saved)
        for field, (value, when) in FORMER_DEFAULTS.items():
            if field not in fields and all(fields.get(k) == v for k, v in when.items()):
                base.update_from_flattened_dict({field: value})
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise UserError(f'{path} is damaged ({type(e).__name__}: {e}); restore it from '
                        f'history.jsonl or a backup') from None
    return base


def _merge(config: ml_collections.ConfigDict, saved: dict) -> None:
    if not isinstance(saved, dict):
        raise TypeError(f'expected a JSON object, got {type(saved).__name__}')
    for key, value in saved.items():
        if isinstance(value, dict) and key in config:
            _merge(config[key], value)
        elif key in config and isinstance(config[key], tuple):
            config[key] = tuple(value)
        else:
            config[key] = value


def flatten(config) -> dict[str, Any]:
    """{'objective.beta': 4.0, ...}: every leaf field, values as JSON reads them back."""
    return _flatten_json(json.loads(config.to_json_best_effort()))


def _flatten_json(tree: dict) -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f'{prefix}{k}.')
            else:
                out[prefix + k] = v
    walk(tree, '')
    return out


def changes(old, new) -> dict[str, tuple[Any, Any]]:
    """{field: (old value, new value)} for every field that differs between two configs."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def training_changes(diff: dict[str, tuple[Any, Any]], new) -> list[str]:
    """The fields of `diff` that change what is trained (everything not in ALLOWED; the run's
    length too when the learning-rate schedule depends on it)."""
    def allowed(key):
        if key in LENGTH:
            return new.optim.schedule == 'constant'
        return any(key == a or (a.endswith('.') and key.startswith(a)) for a in ALLOWED)
    return [k for k in diff if not allowed(k)]


def describe(diff: dict[str, tuple[Any, Any]], keys) -> str:
    return ', '.join(f'{k} {diff[k][0]!r} -> {diff[k][1]!r}' for k in keys)


def check_relaunch(path: Path, config, base, allow_change: bool) -> dict[str, tuple[Any, Any]]:
    """Compares `config` with the run already in `path`; writes nothing.

    Returns the changes to record ({} for a new workdir). Raises UserError naming the differing
    fields if any changes what is trained and `allow_change` is false.
    """
    if not (path / CONFIG_FILE).exists():
        if newest_checkpoint(path) is not None and not allow_change:
            raise UserError(f'{path} holds checkpoints but no {CONFIG_FILE}: what they trained '
                            f'is unknown; use a new --workdir (or --allow_config_change to '
                            f'continue them as this config)')
        return {}
    diff = changes(read_config(path, base), config)
    bad = training_changes(diff, config)
    if bad and not allow_change:
        raise UserError(f'{path} holds a run of another config ({describe(diff, bad)}); use a new '
                        f'--workdir, or --allow_config_change to continue this run with the '
                        f'change recorded in history.jsonl')
    return diff


def record_launch(path: Path, config, start_step: int, diff: dict, forced: bool) -> None:
    """Writes config.json (the config from `start_step` on) and appends to history.jsonl."""
    if not is_writer():
        return
    entry = {'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'host': socket.gethostname(),
             'pid': os.getpid(), 'start_step': start_step,
             'event': 'start' if start_step == 0 and not diff else 'resume',
             'changes': {k: list(v) for k, v in diff.items()},
             'xla_flags': os.environ.get('XLA_FLAGS', ''),  # what this process's XLA read
             'cpu_kernels': native.in_use()}  # vae_jax's own kernels, if loaded
    forced_fields = training_changes(diff, config) if forced else []
    if forced_fields:
        entry['forced'] = forced_fields
    with open(path / HISTORY_FILE, 'a') as f:  # on disk before config.json changes
        f.write(json.dumps(entry, default=str) + '\n')
        f.flush()
        os.fsync(f.fileno())
    write_atomic(path / CONFIG_FILE, config.to_json_best_effort(indent=2) + '\n')


TIMINGS_FILE = 'timings.jsonl'


def record_timings(path: Path, start_step: int, end_step: int, seconds: dict) -> None:
    """Appends where one launch's wall time went (`timings.Timings.as_dict`) to
    timings.jsonl: one line per launch, kept apart from the (deterministic) metrics."""
    if is_writer():
        entry = {'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'start_step': start_step,
                 'end_step': end_step, 'seconds': seconds}
        with open(path / TIMINGS_FILE, 'a') as f:
            f.write(json.dumps(entry) + '\n')


RUN_INFO = 'run.json'


def save_run_info(workdir: Path, example_shape, num_classes: int) -> None:
    """What `run.load_run` needs besides the config and the checkpoint: the data's shapes."""
    if is_writer():
        info = {'example_shape': list(example_shape), 'num_classes': int(num_classes)}
        write_atomic(workdir / RUN_INFO, json.dumps(info) + '\n')
