"""Everything a run writes: checkpoints (orbax), metrics (JSONL + TensorBoard), config, images.

Layout of a workdir:
    config.json            the full config of the run
    metrics.jsonl          one JSON object per logged step: {"step": s, "split": ..., ...}
    events.out.tfevents.*  the same scalars (and image grids) for TensorBoard
    checkpoints/<step>/    orbax checkpoints, the last `keep_checkpoints` kept
    images/                PNG grids written at each eval
Only process 0 writes metrics, images and the config; every process calls the checkpoint manager
(orbax synchronizes them) and process 0 writes the checkpoint's arrays.
"""

import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from vae_jax import distributed
from vae_jax.errors import UserError


def check(workdir: str | os.PathLike) -> Path:
    """Raises UserError if `workdir` cannot hold a run; writes nothing. Returns it as a Path."""
    path = Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f'workdir {path} exists and is not a directory')
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f'workdir {path} cannot be created: {parent} is a file')
    return path


def prepare(workdir: str | os.PathLike) -> Path:
    """Checks that `workdir` can hold a run, creates it if needed, and returns it as a Path."""
    path = check(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'cannot create workdir {path}: {e.strerror}') from None
    if not os.access(path, os.W_OK):
        raise UserError(f'workdir {path} is not writable')
    return path


def is_writer() -> bool:
    return jax.process_index() == 0


def save_config(workdir: Path, config) -> None:
    if is_writer():
        (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2) + '\n')


class Checkpoints:
    """orbax CheckpointManager over `workdir/checkpoints`, keeping the last `keep` steps.

    With several processes, every process must create it and call `save` with the same steps
    (orbax synchronizes them), on a workdir they all share (checked here); process 0 alone writes
    the arrays, which are host-local copies (numpy) of a state that is the same everywhere.
    """

    def __init__(self, workdir: Path, keep: int, read_only: bool = False):
        if not read_only:
            distributed.check_shared_dir(workdir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                               read_only=read_only)
        self.manager = ocp.CheckpointManager(workdir / 'checkpoints', options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores into the structure (and dtypes) of `target`; latest step by default."""
        step = self.manager.latest_step() if step is None else step
        if jax.process_count() > 1:  # every process reads the whole (small) state as numpy
            target = jax.device_get(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def save(self, step: int, state: Any) -> None:
        # orbax refuses host-local jax.Arrays (one device's copy) when there are several
        # processes; numpy arrays it treats as replicated and writes from process 0 only.
        self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class MetricWriter:
    """Writes scalars to metrics.jsonl and TensorBoard event files (tensorboardX, no TensorFlow).

    On resume from step s, JSONL lines of steps > s (written after the last checkpoint by the
    interrupted run) are dropped, so the file reads as one uninterrupted run.
    """

    def __init__(self, workdir: Path, start_step: int | None):
        """`start_step`: the step training resumes from; None (evaluation) appends only."""
        self.enabled = is_writer()
        self.path = workdir / 'metrics.jsonl'
        self.image_dir = workdir / 'images'
        if not self.enabled:
            return
        if self.path.exists() and start_step is not None:
            kept = [l for l in self.path.read_text().splitlines()
                    if l.strip() and json.loads(l)['step'] <= start_step]
            self.path.write_text(''.join(l + '\n' for l in kept))
        from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
        self.tb = SummaryWriter(str(workdir), purge_step=start_step or None)
        self.file = self.path.open('a')

    def scalars(self, step: int, split: str, values: Mapping[str, float],
                jsonl: bool = True) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        if jsonl:
            self.file.write(json.dumps({'step': step, 'split': split, **values}) + '\n')
            self.file.flush()
        for k, v in values.items():
            self.tb.add_scalar(f'{split}/{k}', v, step)

    def image(self, step: int, name: str, grid: np.ndarray) -> None:
        """grid: [h, w, c] float in [0, 1]; written as images/<name>_<step>.png and to TensorBoard."""
        if not self.enabled:
            return
        self.image_dir.mkdir(exist_ok=True)
        pixels = np.asarray(np.clip(grid, 0, 1) * 255 + 0.5, np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
            self.image_dir / f'{name}_{step:07d}.png')
        self.tb.add_image(name, pixels, step, dataformats='HWC')

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
