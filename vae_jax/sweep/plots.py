"""One PNG per metric: the metric against the swept value, mean ± std over seeds.

The x axis is the first swept non-seed field with more than one value (numeric fields on a
log axis when their positive values span a factor of 10 or more, anything else as categories);
every other swept non-seed field splits the points into lines. Seeds are what the error bars
(sample std) are over; the single runs are drawn as faint dots.
"""

import math
import re
from pathlib import Path
from typing import Sequence

from vae_jax.sweep.define import format_value, short_labels
from vae_jax.sweep.rows import Row, is_seed, mean_std, shown_metrics, swept_keys


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_axes(rows: Sequence[Row]) -> tuple[str | None, list[str]]:
    """(the x-axis field, the fields that split lines); x is None when only seeds vary."""
    varying = [k for k in swept_keys(rows) if not is_seed(k)
               and len({r.values.get(k) for r in rows}) > 1]
    if not varying:
        return None, []
    numeric = [k for k in varying if _numeric(r.values.get(k) for r in rows)]
    x = (numeric or varying)[0]
    return x, [k for k in varying if k != x]


def file_name(metric: str) -> str:
    return re.sub(r'[^A-Za-z0-9._+-]', '-', metric) + '.png'


def plot_metrics(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """Writes out_dir/<metric>.png for every metric with a finished value; returns the paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x_key, line_keys = plot_axes(rows)
    done = [r for r in rows if r.status == 'done']
    if x_key is None or not done:
        return []
    xs = list(dict.fromkeys(r.values.get(x_key) for r in rows))
    numeric = _numeric(xs)
    if numeric:
        xs = sorted(xs)
        log = min(xs) > 0 and max(xs) / min(xs) >= 10
        position = {v: v for v in xs}
    else:
        log = False
        position = {v: i for i, v in enumerate(xs)}
    labels = short_labels(swept_keys(rows))
    lines: dict[tuple, list[Row]] = {}
    for r in done:
        lines.setdefault(tuple(r.values.get(k) for k in line_keys), []).append(r)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in shown_metrics(rows):
        if not any(math.isfinite(r.metrics.get(metric, math.nan)) for r in done):
            continue
        fig = Figure(figsize=(5.5, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for i, (setting, group) in enumerate(lines.items()):
            color = f'C{i % 10}'
            label = ','.join(f'{labels[k]}={format_value(v)}' for k, v in zip(line_keys, setting))
            px, means, stds = [], [], []
            for v in xs:
                values = [r.metrics.get(metric) for r in group if r.values.get(x_key) == v]
                mean, std, n = mean_std(values)
                if n:
                    px.append(position[v])
                    means.append(mean)
                    stds.append(std)
                finite = [y for y in values if y is not None and math.isfinite(y)]
                ax.plot([position[v]] * len(finite), finite, '.', color=color, alpha=0.3)
            ax.errorbar(px, means, yerr=stds, marker='o', capsize=3, color=color,
                        label=label or None)
        if log:
            ax.set_xscale('log')
        if not numeric:
            ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
        elif log:
            ax.set_xticks(xs, [format_value(v) for v in xs])
            ax.minorticks_off()
        ax.set_xlabel(x_key)
        ax.set_ylabel(metric)
        ax.set_title(f'{metric}: mean ± std over seeds', fontsize=10)
        if line_keys:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / file_name(metric)
        fig.savefig(path)
        paths.append(path)
    return paths
