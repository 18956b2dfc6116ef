"""The reproduction ledger: published numbers, the configs that reproduce them, and our results.

A ledger row is an experiment file (`experiments/paper/<row>.py`) holding the paper's protocol
in `get_config`, a `get_sweep` over seeds, and a `PUBLISHED` record saying which number of which
paper it reproduces. The command trains and evaluates rows and tabulates them:

    python -m vae_jax.ledger list                                   # the rows and their sources
    python -m vae_jax.ledger run --rows=flax_vae --root=runs/paper  # train + evaluate, then table
    python -m vae_jax.ledger run --rows=burda_l1_k1 --arg=steps=200000,seeds=1
    python -m vae_jax.ledger table --root=runs/paper                # the table, no training

A row runs as `launch.py --config=<row file>[:arg] --sweep --workdir=ROOT/<row>` (a sweep over
seeds: finished points are skipped, an interrupted one resumes from its checkpoint), then, for
rows whose number is a bound on log p(x), `launch.py --mode=eval` on every finished point that
has no likelihood result at its last step. Rerunning the same command therefore only does what
is missing, and `table` reads what is there. `--arg` is passed to the row file (`steps=N`
compresses or cuts the paper's schedule to N steps, `seeds=N`).

The table (ROOT/ledger.md and ROOT/ledger.json) has, per row: the paper and the published value,
ours as mean ± std over the finished seeds, the gap (ours − published; lower is better for
every metric here, so a negative gap beats the paper; `verdict`: 'match' within ±0.5 nats), the steps we trained against the
paper's, the wall time (training + evaluation, mean per seed), the hardware and the command.
Each row also gets ROOT/<row>/curve.png: its test metric during training against the
published value.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from vae_jax.errors import UserError
from vae_jax.sweep.define import sweep
from vae_jax.metric_writer import METRICS_FILE, read_metrics
from vae_jax.results import results_path
from vae_jax.workdir import write_atomic
from vae_jax.sweep.rows import Row, collect, mean_std

REPO = Path(__file__).resolve().parents[1]
ROWS_DIR = REPO / 'experiments' / 'paper'
RECORD = 'ledger.json'   # ROOT/<row>/ledger.json: how and where each point was run
ROW_ARGS = dict(steps=0, seeds=1)  # the arguments every row file accepts (and may extend)
# What a row's number is: the key of a finished point's metrics (`sweep.rows.collect`).
METRICS = {
    'nll': 'likelihood/nll',     # -log p(x) from the IWAE bound of `launch.py --mode=eval`
    'neg_elbo': 'eval/neg_elbo',  # the -ELBO of the training's last eval (its eval split)
}


@dataclasses.dataclass(frozen=True)
class Published:
    """The number a row reproduces, in nats per example (lower is better)."""
    paper: str            # 'Burda et al. 2015, Table 1'
    setting: str          # what the number is of: 'VAE, 1 stochastic layer, k=1'
    value: float          # the published value
    metric: str           # a key of METRICS
    paper_steps: int      # the optimizer steps of the paper's protocol
    others: tuple = ()    # ((who, value), ...): other published reproductions, e.g. Pythae's
    note: str = ''        # a protocol difference the table should show


def seed_sweep(seeds: int):
    """The sweep of a ledger row: seeds 0 … seeds-1 (a sweep of one point with seeds=1)."""
    return sweep('seed', range(max(1, seeds)))


@dataclasses.dataclass(frozen=True)
class RowFile:
    name: str
    path: Path
    published: Published
    module: object  # the loaded experiment file


def row_config(row: RowFile, arg: str | None = None):
    """The row's config (unlocked), as `--config=<row file>[:arg]` builds it."""
    return row.module.get_config(arg)


def load_rows(rows_dir: Path = ROWS_DIR) -> dict[str, RowFile]:
    """Every experiment file in `rows_dir` with a PUBLISHED record, by file name."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # row files import their recipes from experiments/
    out = {}
    for path in sorted(Path(rows_dir).glob('*.py')):
        if path.name.startswith('_'):
            continue
        spec = importlib.util.spec_from_file_location(f'vae_jax_ledger_{path.stem}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        published = getattr(module, 'PUBLISHED', None)
        if isinstance(published, Published):
            if published.metric not in METRICS:
                raise UserError(f'{path}: PUBLISHED.metric {published.metric!r} is not one of '
                                f'{", ".join(METRICS)}')
            out[path.stem] = RowFile(path.stem, path, published, module)
    return out


def select(rows: dict[str, RowFile], names: str) -> list[RowFile]:
    if not names:
        return list(rows.values())
    unknown = [n for n in names.split(',') if n not in rows]
    if unknown:
        raise UserError(f'unknown ledger row(s) {", ".join(unknown)}; the rows are '
                        f'{", ".join(rows)}')
    return [rows[n] for n in names.split(',')]


def hardware() -> str:
    """The machine a point ran on, e.g. '2-core CPU (AMD EPYC 7B13)' or '1 × NVIDIA H200'."""
    try:
        gpus = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                              capture_output=True, text=True, timeout=20).stdout.split('\n')
        gpus = [g.strip() for g in gpus if g.strip()]
    except (OSError, subprocess.SubprocessError):
        gpus = []
    if gpus:
        return f'{len(gpus)} × {gpus[0]}'
    model = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return f'{os.cpu_count()}-core CPU ({model})'


def _read_record(row_root: Path) -> dict:
    try:
        return json.loads((row_root / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(row_root: Path, record: dict) -> None:
    write_atomic(row_root / RECORD, json.dumps(record, indent=1) + '\n')


def _call(cmd: Sequence[str], log: Path) -> float:
    """Runs `cmd` from the repository root with its output appended to `log`; its seconds."""
    with log.open('a') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        start = time.monotonic()
        code = subprocess.run(list(cmd), cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        reasons = [line for line in log.read_text().splitlines() if line.startswith('error:')]
        reason = f' ({reasons[-1]})' if reasons else ''
        raise UserError(f'{" ".join(cmd[1:4])} ... exited with status {code}{reason}; see {log}')
    return time.monotonic() - start


def spec(row: RowFile, arg: str) -> str:
    """The --config value of the row: its file (relative to the repository when inside it)."""
    path = row.path.resolve()
    path = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return f'{path}' + (f':{arg}' if arg else '')


def run_row(row: RowFile, root: Path, arg: str = '') -> None:
    """Trains every seed of `row` in root/<row> and evaluates what has no result yet."""
    row_root = root / row.name
    row_root.mkdir(parents=True, exist_ok=True)
    log = root / f'{row.name}.log'
    record = _read_record(row_root)
    train = [sys.executable, 'launch.py', f'--config={spec(row, arg)}', '--sweep',
             f'--workdir={row_root}']
    _call(train, log)
    record.update(command=' '.join(['python'] + train[1:]), arg=arg)
    record.setdefault('points', {})
    _, points = collect(row_root)
    for point in points:
        if point.status != 'done':
            continue
        entry = record['points'].setdefault(point.name, {})
        entry['hardware'] = entry.get('hardware') or hardware()
        if row.published.metric == 'nll' and not _evaluated(row_root / point.name, point):
            entry['eval_s'] = round(_call(
                [sys.executable, 'launch.py', '--mode=eval', f'--workdir={row_root / point.name}'],
                log), 1)
            _write_record(row_root, record)  # an evaluation's time survives a later failure
    _write_record(row_root, record)


def _evaluated(workdir: Path, point: Row) -> bool:
    """Whether the point has a likelihood result of its last training step."""
    try:
        results = json.loads(results_path(workdir, point.step).read_text())
    except (OSError, ValueError, TypeError):
        return False
    return 'likelihood' in results


def summarize_row(row: RowFile, root: Path) -> dict | None:
    """The row's ledger entry from what root/<row> holds, or None if no seed finished."""
    row_root = root / row.name
    if not (row_root / 'sweep.json').exists():
        return None
    sweep_def, points = collect(row_root)
    key = METRICS[row.published.metric]
    done = [p for p in points if p.status == 'done' and p.metrics.get(key) is not None]
    if row.published.metric == 'nll':
        done = [p for p in done if _evaluated(row_root / p.name, p)]
    if not done:
        return None
    record = _read_record(row_root)
    values = [p.metrics[key] for p in done]
    mean, std, n = mean_std(values)
    entries = [record.get('points', {}).get(p.name, {}) for p in done]
    walls = [(p.wall_s or 0) + e.get('eval_s', 0) for p, e in zip(done, entries)]
    config = json.loads((row_root / done[0].name / 'config.json').read_text())
    pub = row.published
    return {
        'row': row.name, 'paper': pub.paper, 'setting': pub.setting, 'metric': pub.metric,
        'published': pub.value, 'others': [list(o) for o in pub.others], 'note': pub.note,
        'ours_mean': mean, 'ours_std': std, 'seeds': n, 'ours': values,
        'gap': mean - pub.value, 'steps': done[0].step, 'paper_steps': pub.paper_steps,
        'k': config['eval']['iwae_samples'] if pub.metric == 'nll' else None,
        'test_examples': config['eval']['iwae_examples'] if pub.metric == 'nll' else None,
        'wall_s_per_seed': sum(walls) / len(walls),
        'hardware': sorted({e.get('hardware') or 'unknown' for e in entries}),
        'command': record.get('command') or f'python -m vae_jax.ledger run --rows={row.name}',
        'verdict': verdict(mean - pub.value),
        'curve': str((row_root / 'curve.png').relative_to(root)),
    }


def _steps(n: int) -> str:
    return f'{n / 1e6:.3g}M' if n >= 1e6 else f'{n / 1e3:.3g}k' if n >= 1e4 else str(n)


def _duration(seconds: float) -> str:
    return f'{seconds / 3600:.1f} h' if seconds >= 5400 else f'{seconds / 60:.0f} min' \
        if seconds >= 90 else f'{seconds:.0f} s'


def verdict(gap: float) -> str:
    """'better' (more than 0.5 nats below the published value), 'match' (within ±0.5) or
    'short' (more than 0.5 above): the ledger's goal is a match or better."""
    return 'better' if gap < -0.5 else 'match' if gap <= 0.5 else 'short'


def table(entries: Sequence[dict]) -> str:
    lines = ['| row | paper: setting | published | ours | gap | steps (ours / paper) | '
             'wall time per seed | hardware |', '|---|---|---|---|---|---|---|---|']
    for e in entries:
        metric = f"−log p(x), k={e['k']}" if e['metric'] == 'nll' else '−ELBO'
        if e.get('test_examples'):
            metric += f" on the first {e['test_examples']:,} test images"
        others = ''.join(f'; {who} {v}' for who, v in e['others'])
        ours = (f"{e['ours_mean']:.2f} ± {e['ours_std']:.2f} ({e['seeds']} seeds)"
                if e['seeds'] > 1 else f"{e['ours_mean']:.2f} (1 seed)")
        short = '' if e['steps'] >= e['paper_steps'] else ' (shortened)'
        lines.append(
            f"| {e['row']} | {e['paper']}: {e['setting']} | {e['published']}{others} | {ours}, "
            f"{metric} | {e['gap']:+.2f} ({verdict(e['gap'])}) | {_steps(e['steps'])} / "
            f"{_steps(e['paper_steps'])}{short} | {_duration(e['wall_s_per_seed'])} | "
            f"{', '.join(e['hardware'])} |")
    notes = [f"- {e['row']}: {e['note']}" for e in entries if e['note']]
    return '\n'.join(lines + ([''] + notes if notes else []))


def plot_curve(row: RowFile, root: Path) -> Path | None:
    """ROOT/<row>/curve.png: each seed's eval −ELBO (and final bound) by step, against the
    published value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    row_root = root / row.name
    if not (row_root / 'sweep.json').exists():
        return None
    _, points = collect(row_root)
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn, values = False, [row.published.value]
    for p in points:
        try:
            records, _ = read_metrics(row_root / p.name / METRICS_FILE)
        except OSError:
            continue
        evals = [r for r in records if r.get('split') == 'eval' and 'neg_elbo' in r]
        if evals:
            ax.plot([r['step'] for r in evals], [r['neg_elbo'] for r in evals],
                    label=f'{p.name}: eval −ELBO', marker='.')
            drawn = True
            values += [r['neg_elbo'] for r in evals]
        nll = p.metrics.get('likelihood/nll')
        if nll is not None and p.step is not None:
            ax.plot([p.step], [nll], 'k*', markersize=10, label=f'{p.name}: −log p(x) bound')
            values.append(nll)
    if not drawn:
        return None
    ax.axhline(row.published.value, color='r', linestyle='--',
               label=f'published {row.published.value}')
    # The first evals of a long run are far above the rest: keep the end of the curve readable.
    ax.set_ylim(min(values) - 1, min(max(values), row.published.value + 30) + 1)
    ax.set_xlabel('step')
    ax.set_ylabel('nats per example')
    ax.set_title(f'{row.name}: {row.published.paper}', fontsize=9)
    ax.legend(fontsize=7)
    path = row_root / 'curve.png'
    fig.savefig(path, dpi=100, bbox_inches='tight')
    return path


def write_table(rows: Sequence[RowFile], root: Path) -> str:
    entries = []
    for row in rows:
        entry = summarize_row(row, root)
        if entry is not None:
            plot_curve(row, root)
            entries.append(entry)
    text = table(entries)
    root.mkdir(parents=True, exist_ok=True)
    (root / 'ledger.md').write_text(text + '\n')
    (root / 'ledger.json').write_text(json.dumps(entries, indent=1) + '\n')
    return text


def list_rows(rows: Sequence[RowFile]) -> str:
    lines = ['| row | paper | setting | published | metric | paper steps |',
             '|---|---|---|---|---|---|']
    for r in rows:
        p = r.published
        others = ''.join(f'; {who} {v}' for who, v in p.others)
        lines.append(f'| {r.name} | {p.paper} | {p.setting} | {p.value}{others} | {p.metric} | '
                     f'{_steps(p.paper_steps)} |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m vae_jax.ledger',
                                     description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    ls = commands.add_parser('list', help='the rows: paper, setting, published value')
    ls.add_argument('--rows_dir', default=str(ROWS_DIR), help='where the row files are')
    for name, text in (('run', 'train and evaluate rows, then write the table'),
                       ('table', 'write the table of what ROOT holds, without training')):
        p = commands.add_parser(name, help=text)
        p.add_argument('--root', default='runs/paper', help='where the rows are trained')
        p.add_argument('--rows', default='', help='comma-separated row names to run (default: '
                       'all); the table lists every finished row in ROOT')
        p.add_argument('--rows_dir', default=str(ROWS_DIR), help='where the row files are')
        if name == 'run':
            p.add_argument('--arg', default='', help="the rows' config argument, e.g. "
                           "'steps=20000,seeds=3'")
    args = parser.parse_args(argv)
    try:
        rows = load_rows(Path(args.rows_dir))
        if args.command == 'list':
            print(list_rows(rows.values()))
            return 0
        chosen = select(rows, args.rows)
        root = Path(args.root).resolve()
        failed = []
        if args.command == 'run':
            os.environ.setdefault('TFDS_DATA_DIR', str(REPO.parent / 'shared' / 'data' / 'tfds'))
            for row in chosen:
                try:
                    run_row(row, root, args.arg)
                except UserError as e:  # the next rows still run; the table shows what finished
                    failed.append(f'{row.name}: {e}')
        print(write_table(rows.values(), root))  # every finished row in ROOT, whoever ran it
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    for message in failed:
        print(f'error: {message}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    # Through the imported module, so that its Published is the one the row files import.
    from vae_jax import ledger
    sys.exit(ledger.main())
