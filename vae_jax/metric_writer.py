"""Metrics a run writes: metrics.jsonl and TensorBoard event files (tensorboardX, no TensorFlow).

Both read as one uninterrupted run after any kill and resume:
- every log step flushes both files, so what a killed run logged up to its last checkpoint is
  on disk;
- a resume from step s drops the JSONL lines of steps > s (logged after that checkpoint, or torn
  by the kill) and starts a new event file whose first event is TensorBoard's purge marker
  (SessionLog START at step s + 1): TensorBoard then discards the earlier files' events of
  steps > s, which the resumed run logs again.
"""

import json
import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
from absl import logging
from PIL import Image

from vae_jax import workdir as workdir_lib

METRICS_FILE = 'metrics.jsonl'


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """The parseable lines of a metrics.jsonl, and how many were not (a torn last line)."""
    rows, bad = [], 0
    for line in path.read_text(errors='replace').splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row['step'])
            rows.append(row)
        except (ValueError, TypeError, KeyError):
            bad += 1
    return rows, bad


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch.

    tensorboardX imports torch whenever it is installed (to accept its tensors), 1.2-1.9 s of
    every launch on a machine with PyTorch (the `bench` extra; `python -X importtime -c
    "import tensorboardX"`), for nothing: vae_jax writes
    numpy. While tensorboardX loads, `import torch` fails as if it were absent; a torch that is
    already imported stays as it is.
    """
    if 'tensorboardX' in sys.modules or 'torch' in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules['torch'] = None  # `import torch` raises ImportError while this is here
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules['torch']
    return SummaryWriter


def _event_file_suffix(workdir: Path) -> str:
    """'.<n>.<pid>' for the event file a new writer opens: n counts the workdir's event files.

    The name is events.out.tfevents.<whole seconds>.<host><suffix> and TensorBoard reads the
    files in name order, applying each file's purge marker to those read before it. Two
    writers opened within one second (a relaunch of a short run, two evaluations) differ
    only in the suffix: with the pid alone the second would reopen, and truncate, the first
    file when both are in one process, and two processes would sort by pid, not by age. The
    count makes the name new and sorts it after every earlier file; one process writes a
    workdir at a time (its lock).
    """
    n = sum(1 for _ in workdir.glob('events.out.tfevents.*'))
    return f'.{n:04d}.{os.getpid()}'


class MetricWriter:
    """Writes scalars to metrics.jsonl and to TensorBoard, and images to images/ and TensorBoard.

    `start_step`: the step training resumes from (0 for a new run); None (evaluation) appends to
    metrics.jsonl as it is and does not purge.
    """

    def __init__(self, workdir: Path, start_step: int | None):
        self.enabled = workdir_lib.is_writer()
        self.path = workdir / METRICS_FILE
        self.image_dir = workdir / 'images'
        if not self.enabled:
            return
        if self.path.exists() and start_step is not None:
            rows, bad = read_metrics(self.path)
            kept = [r for r in rows if r['step'] <= start_step]
            if bad or len(kept) < len(rows):
                logging.info('metrics.jsonl: kept %d lines up to step %d, dropped %d logged after '
                             'it and %d torn', len(kept), start_step, len(rows) - len(kept), bad)
                workdir_lib.write_atomic(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
        SummaryWriter = _summary_writer_class()  # imported lazily: only process 0 needs it
        # purge_step = s + 1 hides what earlier event files hold for steps > s only.
        self.tb = SummaryWriter(str(workdir), flush_secs=3600,
                                filename_suffix=_event_file_suffix(workdir),
                                purge_step=None if start_step is None else start_step + 1)
        self.file = self.path.open('a')

    def scalars(self, step: int, split: str, values: Mapping[str, float],
                jsonl: bool = True) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        if jsonl:
            self.file.write(json.dumps({'step': step, 'split': split, **values}) + '\n')
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

    def flush(self) -> None:
        """Puts everything written so far on disk (called at every log step)."""
        if self.enabled:
            self.file.flush()
            self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
