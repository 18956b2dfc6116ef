"""`summarize(root)`: every point's final numbers in one table, aggregated over seeds, plotted.

    python -m vae_jax.sweep summarize ROOT

writes ROOT/summary.csv (one row per point), ROOT/summary.md (the seed-aggregated table, the
per-point table and the plots) and ROOT/plots/<metric>.png. A point's numbers are its last
"eval" record of metrics.jsonl (columns eval/<name>) and every scalar of the newest
results/<kind>_<step>.json of each kind, flattened as 'a/b'.
"""

import csv
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
from vae_jax.sweep.define import format_value


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
        try:
            status = json.loads((workdir / 'sweep_status.json').read_text())
        except (OSError, ValueError):
            status = {'status': 'unknown' if workdir.is_dir() else 'missing'}
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


def _csv_value(value):
    if value is None:
        return ''
    return format_value(value) if isinstance(value, tuple) else value


def write_csv(rows: Sequence[Row], path: Path) -> None:
    keys, metrics = swept_keys(rows), metric_names(rows)
    with path.open('w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['index', 'name', 'status', *keys, 'step', *metrics, 'wall_s', 'error'])
        for r in rows:
            w.writerow([r.index, r.name, r.status, *(_csv_value(r.values.get(k)) for k in keys),
                        _csv_value(r.step), *(_csv_value(r.metrics.get(m)) for m in metrics),
                        _csv_value(r.wall_s), _csv_value(r.error)])


def _md(value) -> str:
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(format_value(value) if isinstance(value, tuple) else value).replace('|', '\\|')


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
            *('| ' + ' | '.join(row) + ' |' for row in body)]


def seed_table(rows: Sequence[Row]) -> list[str]:
    """Markdown lines: one row per non-seed setting, mean ± std over its finished seeds."""
    keys = [k for k in swept_keys(rows) if not is_seed(k)]
    metrics = shown_metrics(rows)
    body = []
    for setting, group in seed_groups(rows).items():
        values = dict(setting)
        cells = [_md(values.get(k)) for k in keys] + [str(len(group))]
        for m in metrics:
            mean, std, n = mean_std([r.metrics.get(m) for r in group])
            cells.append('' if n == 0 else f'{mean:.4g}' if n == 1 else f'{mean:.4g} ± {std:.2g}')
        body.append(cells)
    return _table([*keys, 'n', *metrics], body)


def point_table(rows: Sequence[Row]) -> list[str]:
    keys, metrics = swept_keys(rows), metric_names(rows)
    body = [[str(r.index), r.name, r.status, *(_md(r.values.get(k)) for k in keys),
             _md(r.step), *(_md(r.metrics.get(m)) for m in metrics), _md(r.wall_s),
             _md((r.error or '')[:120])] for r in rows]
    return _table(['index', 'name', 'status', *keys, 'step', *metrics, 'wall s', 'error'], body)


def summarize(root: str | Path) -> dict[str, Any]:
    """Writes summary.csv, summary.md and plots/*.png under the sweep root `root`.

    Returns:
      {'rows': [Row], 'csv': path, 'markdown': path, 'plots': [paths]}.
    """
    from vae_jax.sweep.plots import plot_metrics  # matplotlib only here
    root = Path(root)
    sweep, rows = collect(root)
    write_csv(rows, root / 'summary.csv')
    plots = plot_metrics(rows, root / 'plots')
    counts = {s: sum(r.status == s for r in rows) for s in dict.fromkeys(r.status for r in rows)}
    lines = [f'# Sweep {root.name}', '',
             f'Config `{sweep.get("config") or "(run_sweep from Python)"}`; command-line overrides: '
             f'{sweep.get("command_line") or "none"}. {len(rows)} points: '
             + ', '.join(f'{n} {s}' for s, n in counts.items()) + '.', '',
             '## Mean ± std over seeds', '',
             'Finished points only; std is the sample standard deviation (n − 1).', '',
             *seed_table(rows), '', '## Points', '', *point_table(rows), '']
    if plots:
        lines += ['## Plots', '', *(f'![{p.stem}](plots/{p.name})' for p in plots), '']
    (root / 'summary.md').write_text('\n'.join(lines))
    return {'rows': rows, 'csv': root / 'summary.csv', 'markdown': root / 'summary.md',
            'plots': plots}
