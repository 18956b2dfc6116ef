"""Results files (`<workdir>/results/eval_<step>.json`): the one writer, and helpers readers share.

A results file holds sections ('likelihood', 'latents', 'disentanglement', ...) computed by
different evaluations of the same checkpoint: the end-of-training metrics and `--mode=eval`
each contribute theirs. `write_results` is the only function that writes one: it merges the
new sections into what the file holds (a section computed again replaces the old one) and
writes atomically, so an interrupted evaluation never leaves half a file.
"""

import json
from pathlib import Path
from typing import Any

from vae_jax.workdir import write_atomic


def results_path(workdir, step: int) -> Path:
    return Path(workdir) / 'results' / f'eval_{step:07d}.json'


def read_results(workdir, step: int) -> dict[str, Any]:
    """The sections written for checkpoint `step` so far ({} if none)."""
    path = results_path(workdir, step)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(workdir, step: int, sections: dict[str, Any]) -> dict[str, Any]:
    """Merges `sections` into `results/eval_<step>.json` (atomically); returns the file's
    whole content. Call it from process 0 only."""
    path = results_path(workdir, step)
    path.parent.mkdir(exist_ok=True)
    results = dict(read_results(workdir, step), **sections,
                   step=step, workdir=str(Path(workdir)))
    write_atomic(path, json.dumps(results, indent=2) + '\n')
    return results


def flat_scalars(results: dict) -> dict[str, float]:
    """The numeric leaves of `results` as 'a/b' names (lists, strings, booleans left out)."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f'{prefix}/{k}' if prefix else k, v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)
    walk('', {k: v for k, v in results.items() if k not in ('step', 'workdir')})
    return flat
