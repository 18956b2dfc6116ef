"""Checkpoints that survive the machine: orbax saves with a checksum, restored defensively.

Every checkpoint holds the state (`ocp.args.StandardSave`) and an integrity record
(`ocp.args.JsonSave`: the step and a CRC-32 of every array's bytes). orbax writes a checkpoint
into a temporary directory and renames it when complete, so a process killed during a save
leaves no half checkpoint under its step; what it cannot see is a file damaged or deleted
afterwards (a torn write on NFS, a full disk, a user's `rm`). On restore the checksum of what
was read must equal the recorded one; a checkpoint that fails to read or to match is moved to
`<workdir>/checkpoints_set_aside/` (never deleted) with a warning, and the next newest is tried.

With several processes, every process creates the manager and calls `save` with the same steps
(orbax synchronizes them) on a workdir they all share; process 0 alone writes the arrays, which
are host-local copies (numpy) of a state that is the same everywhere.
"""

import logging as std_logging
import shutil
import sys
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vae_jax import distributed
from vae_jax.errors import UserError

SET_ASIDE_DIR = 'checkpoints_set_aside'


def checksum(tree: Any) -> str:
    """CRC-32 over every leaf's shape and bytes, in tree order (hex).

    Integers count as int64: a Python-int leaf of a template (flax's initial `step`) comes back
    from orbax as int64 where the saved state had int32.
    """
    crc = 0
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        a = np.ascontiguousarray(a.astype(np.int64) if a.dtype.kind in 'iub' else a)
        crc = zlib.crc32(f'{a.dtype.str}{a.shape}'.encode(), crc)
        crc = zlib.crc32(a.view(np.uint8).reshape(-1) if a.size else b'', crc)
    return f'{crc:08x}'


class Checkpoints:
    """orbax CheckpointManager over `workdir/checkpoints`, keeping the last `keep` steps."""

    def __init__(self, workdir: Path, keep: int, read_only: bool = False):
        self.workdir = Path(workdir)
        if not read_only:
            distributed.check_shared_dir(self.workdir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only)
        self.manager = ocp.CheckpointManager(
            self.workdir / 'checkpoints', options=options,
            item_handlers={'state': ocp.StandardCheckpointHandler(),
                           'integrity': ocp.JsonCheckpointHandler()})
        self.pending: int | None = None  # the step of a save that may still be in flight

    def steps(self) -> list[int]:
        """The complete checkpoints' steps, newest first (not yet verified)."""
        return sorted(self.manager.all_steps(), reverse=True)

    def read(self, target: Any, step: int) -> Any:
        """The checkpoint of `step` in the structure (and dtypes) of `target`.

        Raises DamagedCheckpoint if it cannot be read or its checksum does not match, and
        UserError if it holds a state of another layout (other parameter shapes, another
        optimizer): that is not damage, and nothing is set aside.
        """
        directory = self.workdir / 'checkpoints' / str(step)
        if (directory / 'default').is_dir() and not (directory / 'state').exists():
            raise UserError(f'{directory} was written by an earlier vae_jax (no checksum, an '
                            f'optimizer state without injected hyperparameters) and cannot be '
                            f'restored by this one; train in a new --workdir')
        if jax.process_count() > 1:  # every process reads the whole (small) state as numpy
            target = jax.device_get(target)
        if hasattr(target, 'as_saved'):  # a state whose fields were renamed since (steps.py)
            target = target.as_saved(self._saved_fields(step))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        self._check_layout(directory, step, abstract)
        _filter_abandoned_reads()
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), integrity=ocp.args.JsonRestore()))
        except ValueError as e:  # what the metadata check above cannot see
            if 'structure' in str(e).lower() or 'shape' in str(e).lower():
                raise _layout_error(directory, _first_line(e)) from None
            raise DamagedCheckpoint(f'unreadable (ValueError: {_first_line(e)})') from None
        except Exception as e:  # orbax/tensorstore raise many types for torn/missing files
            raise DamagedCheckpoint(f'unreadable ({type(e).__name__}: '
                                    f'{_first_line(e)})') from None
        record = restored['integrity'] or {}
        got = checksum(restored['state'])
        if record.get('step') != step or record.get('checksum') != got:
            raise DamagedCheckpoint(f'checksum {got} does not match the recorded '
                                    f'{record.get("checksum")} of step {record.get("step")}')
        state = restored['state']
        return state.current() if hasattr(state, 'current') else state

    def _saved_fields(self, step: int) -> set:
        """The top-level field names of the saved state (empty if the metadata is unreadable)."""
        try:
            return set(self.manager.item_metadata(step)['state'].keys())
        except Exception:  # the read that follows reports the damage
            return set()

    def _check_layout(self, directory: Path, step: int, abstract: Any) -> None:
        """UserError if the checkpoint's arrays (from its metadata) are not those of `abstract`:
        checked before reading, as a failed read leaves orbax's abandoned reads behind."""
        try:
            saved = _shapes(self.manager.item_metadata(step)['state'])
        except Exception:  # unreadable metadata: the read that follows reports the damage
            return
        wanted = _shapes(abstract)
        if saved != wanted:
            path = min(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
            raise _layout_error(directory, f'{"/".join(path)}: shape {saved.get(path, "none")} '
                                           f'there, {wanted.get(path, "none")} now')

    def set_aside(self, step: int, reason: str) -> None:
        """Moves checkpoint `step` to <workdir>/checkpoints_set_aside/ (process 0; all wait)."""
        logging.warning('checkpoint of step %d in %s skipped: %s; moved to %s/', step,
                        self.workdir, reason, SET_ASIDE_DIR)
        if jax.process_index() == 0:
            target = self.workdir / SET_ASIDE_DIR / f'{step}.{time.strftime("%Y%m%dT%H%M%S")}'
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(self.workdir / 'checkpoints' / str(step)), str(target))
        distributed.barrier(f'set_aside_{step}')
        self.manager.reload()

    def read_agreed(self, target: Any, step: int) -> Any:
        """`read`, with every process agreeing: if any of them cannot read the checkpoint, all
        set it aside (collectively) and raise DamagedCheckpoint."""
        try:
            state, failure = self.read(target, step), None
        except DamagedCheckpoint as e:
            state, failure = None, str(e)
        if distributed.any_process(failure is not None):
            reason = failure or 'another process could not read it'
            self.set_aside(step, reason)
            raise DamagedCheckpoint(reason)
        return state

    def save(self, step: int, state: Any) -> None:
        """Starts an (asynchronous) save of `state` as checkpoint `step`.

        Raises UserError if a previous save failed (disk full, no permission); the checkpoints
        written before it stay as they were.
        """
        self.wait()
        # Copies, not views of device buffers: the next step donates those while orbax writes.
        host = jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(state))
        # orbax refuses host-local jax.Arrays (one device's copy) when there are several
        # processes; numpy arrays it treats as replicated and writes from process 0 only.
        try:
            self.manager.save(step, force=True, args=ocp.args.Composite(
                state=ocp.args.StandardSave(host),
                integrity=ocp.args.JsonSave({'step': step, 'checksum': checksum(host)})))
        except Exception as e:
            raise self._save_error(step, e) from None
        self.pending = step

    def wait(self) -> None:
        """Blocks until the save in flight (if any) is on disk; UserError if it failed."""
        if self.pending is None:
            return
        step, self.pending = self.pending, None
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:
            raise self._save_error(step, e) from None

    def _save_error(self, step: int, e: Exception) -> UserError:
        self.manager.reload()
        kept = [s for s in self.steps() if s != step]
        return UserError(f'could not write the checkpoint of step {step} in {self.workdir}: '
                         f'{_first_line(e)}; the newest checkpoint left is '
                         f'{kept[0] if kept else "none"}')

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple]:
    """{leaf path as names: shape}, alike for a state and orbax's metadata of it."""
    def name(key):
        for attr in ('name', 'key', 'idx'):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)
    return {tuple(name(k) for k in path): tuple(getattr(leaf, 'shape', np.shape(leaf)))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _layout_error(directory: Path, detail: str) -> UserError:
    return UserError(f'{directory} holds a state of another layout than this config builds '
                     f'({detail}): the model or optimizer differs from what was trained there; '
                     f'train it in a new --workdir')


class DamagedCheckpoint(Exception):
    """A checkpoint that cannot be read or whose contents do not match its checksum."""


_FILTERING = []


class _AbandonedReadTasks(std_logging.Filter):
    """asyncio's "Task exception was never retrieved" report (with its traceback) of a failed
    orbax read task that nobody awaited."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        message = record.getMessage()
        if 'exception was never retrieved' not in message:
            return True
        frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info else []
        return not ('/orbax/' in message or any('/orbax/' in f.filename for f in frames))


def _filter_abandoned_reads() -> None:
    """When one array of a checkpoint fails to read, orbax abandons the reads of the others;
    Python reports each abandoned coroutine, and the closed event loop it then calls, with a
    traceback on stderr whenever they are collected, and asyncio logs each failed task that
    nobody awaited, whenever it is collected. The failure itself is reported once
    (DamagedCheckpoint): from the first read on, this process drops those echoes, and only
    those."""
    if _FILTERING:
        return
    std_logging.getLogger('asyncio').addFilter(_AbandonedReadTasks())
    previous = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, 'cr_code', None)
        abandoned = code is not None and '/orbax/' in code.co_filename
        closed_loop = (isinstance(unraisable.exc_value, RuntimeError)
                       and str(unraisable.exc_value) == 'Event loop is closed')
        if not (abandoned or closed_loop):
            previous(unraisable)
    sys.unraisablehook = hook
    _FILTERING.append(hook)


def _first_line(e: Exception) -> str:
    """The gist of a library error: its first line, without TensorStore's spec dump."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[0].split(' See full TensorStore details')[0][:300] if lines else type(e).__name__
