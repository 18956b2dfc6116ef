"""A sweep root read back: one `Row` per point, and the helpers its tables and plots share.

A point's numbers are its last "eval" record of metrics.jsonl (columns eval/<name>) and every
scalar of the newest results/<kind>_<step>.json of each kind, flattened as 'a/b'. Used by
`summary` (tables), `plots` and the runner's report (`last_eval`); it imports none of them.
"""

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vae_jax.errors import UserError
from vae_jax.metric_writer import METRICS_FILE, read_metrics
from vae_jax.results import flat_scalars
from vae_jax.sweep.status import read_status


def last_eval(workdir: Path) -> dict | None:
    """The last {"split": "eval"} record of workdir/metrics.jsonl, or None."""
    try:
        rows, _ = read_metrics(Path(workdir) / METRICS_FILE)  # skips a line torn by a kill
    except OSError:
        return None
    evals = [r for r in rows if r.get('split') == 'eval']
    return evals[-1] if evals else None


def latest_results(workdir: Path) -> dict[str, float]:
    """Scalars of the newest results/<kind>_<step>.json of every kind (eval, ...), merged."""
    newest: dict[str, tuple] = {}
    for path in sorted((Path(workdir) / 'results').glob('*.json')):
        match = re.fullmatch(r'(.*?)(?:_(\d+))?', path.stem)
        kind, step = match.group(1), int(match.group(2) or -1)
        order = (step, path.stat().st_mtime)
        if kind not in newest or order > newest[kind][0]:
            newest[kind] = (order, path)
    out = {}
    for _, path in sorted(newest.values(), key=lambda t: t[0]):
        try:
            out.update(flat_scalars(json.loads(path.read_text())))
        except ValueError:
            continue  # being written
    return out


@dataclasses.dataclass
class Row:
    index: int
    name: str
    overrides: dict[str, Any]   # what the point sets
    values: dict[str, Any]      # every swept field's value in this point (base where not set)
    status: str                 # done | failed | started | missing | unknown (no status file)
    step: int | None = None     # of the last eval record
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_s: float | None = None
    error: str | None = None


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def collect(root: str | Path) -> tuple[dict, list[Row]]:
    """(root/sweep.json, one Row per point) from what the points' workdirs hold now."""
    root = Path(root)
    try:
        sweep = json.loads((root / 'sweep.json').read_text())
    except OSError:
        raise UserError(f'{root} has no sweep.json; is it the --workdir of a '
                        f'`launch.py --sweep` run?') from None
    base = {k: _hashable(v) for k, v in sweep.get('base', {}).items()}
    rows = []
    for p in sweep['points']:
        workdir = root / p['name']
        status = read_status(workdir) or {'status': 'unknown' if workdir.is_dir() else 'missing'}
        overrides = {k: _hashable(v) for k, v in p['overrides'].items()}
        row = Row(p['index'], p['name'], overrides, {**base, **overrides}, status['status'],
                  wall_s=status.get('wall_s'), error=status.get('error'))
        ev = last_eval(workdir)
        if ev is not None:
            row.step = ev['step']
            row.metrics = {f'eval/{k}': v for k, v in ev.items() if k not in ('step', 'split')}
        row.metrics.update(latest_results(workdir))
        rows.append(row)
    return sweep, rows


def is_seed(key: str) -> bool:
    return key.rsplit('.', 1)[-1] == 'seed'


def swept_keys(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r.overrides))


def metric_names(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r.metrics))


def shown_metrics(rows: Sequence[Row]) -> list[str]:
    """The metrics worth a table column or a plot: those that differ between finished points.

    Constants (sample sizes, thresholds, latent counts) and timings stay in summary.csv and
    the per-point table only.
    """
    names = [m for m in metric_names(rows) if not m.endswith('wall_time_s')]
    done = [r for r in rows if r.status == 'done']
    if len(done) < 2:
        return names
    return [m for m in names if len({repr(r.metrics.get(m)) for r in done}) > 1]


def seed_groups(rows: Sequence[Row]) -> dict[tuple, list[Row]]:
    """Rows by their non-seed values (in sweep order), finished points only."""
    keys = [k for k in swept_keys(rows) if not is_seed(k)]
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        key = tuple((k, r.values.get(k)) for k in keys)
        groups.setdefault(key, [])
        if r.status == 'done':
            groups[key].append(r)
    return groups


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; 0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)
