"""`summarize(root)`: every point's final numbers in one table, aggregated over seeds, plotted.

    python -m vae_jax.sweep summarize ROOT

writes ROOT/summary.csv (one row per point), ROOT/summary.md (the seed-aggregated table, the
per-point table and the plots) and ROOT/plots/<metric>.png, from the rows `rows.collect` reads.
"""

import csv
from pathlib import Path
from typing import Any, Sequence

from vae_jax.sweep.define import format_value
from vae_jax.sweep.plots import plot_metrics  # imports matplotlib only when it plots
from vae_jax.sweep.rows import (Row, collect, is_seed, mean_std, metric_names, seed_groups,
                                shown_metrics, swept_keys)


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
