"""Accelerator readiness in one run: train-step throughput (JAX vs PyTorch) and one ledger row.

On a GPU machine that reaches no package registry but has Python 3.12 with JAX's CUDA build,
flax, optax, chex, orbax, PyTorch and the rest of the scientific stack: first, where pip works,
`bash benchmarks/accelerator_wheels.sh` puts the wheels of vae_jax's other dependencies in .whl/
and the row's data (b) in runs/tfds/; carry both, and run there, from the repository root, with
a timeout of ~480 s:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD python3 benchmarks/accelerator_check.py --row_data_dir=runs/tfds --time_budget=$((430 - SECONDS)) --out=$OUT/accelerator_check.json

(On a machine that reaches PyPI: `pip install -e '.[bench]'` and JAX's CUDA build instead of
the wheels.) Run so on an NVIDIA H200 on 2026-12-04 it took 357 s (compilation of the four
models' steps 196 s of it); benchmarks/README.md, "On a GPU", has the table. The header says
whether torch (and JAX) found the GPU, else they ran on cpu. Without the row's data the row is
reported as skipped, with the reason.

It prints, as each is measured and then as one markdown table (and as JSON to --out, default
$OUT/accelerator_check.json when $OUT is set, rewritten after each measurement so a killed run
still leaves what it had):
 (a) steps/s and images/s (median of timed blocks in alternating rounds; the first step, with
     compilation, apart) of benchmarks/train_speed.py's models: the experiment's real pmapped
     JAX step (in calls of the config's steps_per_execution steps, as the training loop makes
     them: 10 for the mlp) against a PyTorch implementation of the same network, loss and optimizer, on the
     same device (cuda when there is one, else cpu). Default: mlp (experiments/vae.py), conv
     (beta_vae.py), hvae (hvae.py) and vdvae (vdvae.py, JAX only: no PyTorch reference).
 (b) the wall time and test -ELBO of `python -m vae_jax.ledger run --rows=flax_vae` (flax's
     examples/vae protocol, 3,900 steps; ~30 s on a 2-core CPU), in a temporary root.
 (c) a header: jax version, backend and devices, torch version and device.

--time_budget (s, from the script's start): no measurement starts when it would end past it;
the row's share (ROW_RESERVE_S) is kept back while (a) runs. SIGTERM prints what is there.
CPU smoke test: `python benchmarks/accelerator_check.py --quick --models=mlp --skip_row`.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

START = time.perf_counter()
# Allocate GPU memory as needed: XLA's default of 75% up front would starve PyTorch and the
# row's own process.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import jax  # noqa: E402

import train_speed  # noqa: E402  (benchmarks/ is on sys.path: this script's folder)
from timing import load_warning  # noqa: E402
from train_speed import MODELS, benchmark, torch  # noqa: E402
from vae_jax.ledger import hardware  # noqa: E402
from vae_jax.workdir import write_atomic  # noqa: E402

ROOT = train_speed.ROOT
ROW = 'flax_vae'
ROW_RESERVE_S = 120   # kept for the row: ~30 s on CPU, plus start-up, compilation and eval
MODEL_MIN_S = {True: 5, False: 30}  # --quick: time a model needs at least to be worth starting


class Interrupted(BaseException):
    """SIGTERM (a timeout): stop measuring, print what there is. Not an Exception, so that a
    model's failure handler does not swallow it."""


def _on_sigterm(signum, frame):
    raise Interrupted


def header(torch_device):
    devices = jax.devices()
    if torch is None:
        torch_text = 'not installed'
    elif torch_device == 'cuda':
        torch_text = f'cuda ({torch.cuda.get_device_name()}), TF32 on, cudnn.benchmark on'
    else:
        torch_text = f'cpu ({torch.get_num_threads()} threads)'
    return {'jax': jax.__version__, 'backend': jax.default_backend(),
            'devices': [f'{d.platform}:{d.id} {d.device_kind}' for d in devices],
            'torch': torch.__version__ if torch is not None else None,
            'torch_device': torch_text, 'hardware': hardware()}


def speed_rows(name, rates, load, batch, first, device):
    """The table rows of one model: one per framework."""
    med = {fw: statistics.median(r) for fw, r in rates.items()}
    rows = []
    for fw, r in rates.items():
        rows.append({
            'model': name, 'config': MODELS[name][0], 'framework': fw,
            'device': jax.devices()[0].platform if fw == 'jax' else device, 'batch': batch,
            'steps_per_s': med[fw], 'min': min(r), 'max': max(r), 'images_per_s': med[fw] * batch,
            'rounds': len(r), 'first_step_s': first[fw],
            'other_cpu': statistics.median(load[fw]) if load[fw] else None,
            'jax_over_torch': (med['jax'] / med['torch'] if fw == 'jax' and 'torch' in med
                               else None)})
    return rows


def run_row(data_dir, arg, timeout_s):
    """{'status': 'ok' | 'skipped' | 'failed' | 'timeout', ...} of the ledger row, run as
    users run it, in a temporary root (its process group is ended on a timeout)."""
    out = {'row': ROW, 'arg': arg, 'data_dir': str(data_dir)}
    if not any((data_dir / 'binarized_mnist').glob('*/dataset_info.json')):
        return dict(out, status='skipped', reason=f'no TFDS binarized_mnist under {data_dir} '
                    '(pass --row_data_dir, see the docstring)')
    if timeout_s < 30:
        return dict(out, status='skipped', reason=f'time budget ({timeout_s:.0f} s left)')
    print(f'  row {ROW}: running (at most {timeout_s:.0f} s)', flush=True)
    with tempfile.TemporaryDirectory(prefix='accelerator_check_') as tmp:
        cmd = [sys.executable, '-m', 'vae_jax.ledger', 'run', f'--rows={ROW}', f'--root={tmp}']
        cmd += [f'--arg={arg}'] if arg else []
        out['command'] = ' '.join(['python'] + cmd[1:5] + cmd[6:])  # without the temp root
        log = Path(tmp) / 'row.log'
        env = dict(os.environ, TFDS_DATA_DIR=str(data_dir))
        t0 = time.perf_counter()
        with log.open('w') as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own group: launch.py included
            try:
                code = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        out['wall_s'] = time.perf_counter() - t0
        if code is None:
            return dict(out, status='timeout', reason=f'stopped after {timeout_s:.0f} s')
        try:
            entry = next(e for e in json.loads((Path(tmp) / 'ledger.json').read_text())
                         if e['row'] == ROW)
        except (OSError, ValueError, StopIteration):
            entry = None
        if code or entry is None:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith('error:')]
            reason = (errors or lines or [f'exit status {code}'])[-1]
            return dict(out, status='failed', reason=reason[:300])
        return dict(out, status='ok', steps=entry['steps'], neg_elbo=entry['ours_mean'],
                    published=entry['published'], train_eval_s=entry['wall_s_per_seed'],
                    hardware=entry['hardware'])


def _f(x, fmt='.1f'):
    return '—' if x is None else format(x, fmt)


def table(report):
    lines = ['| measurement | framework | device | batch | steps/s (median) | min-max | images/s '
             '| first step (compile) s | JAX/torch | note |', '|---' * 10 + '|']
    for r in report['throughput']:
        note = f"{r['rounds']} rounds"
        if r['framework'] == 'jax' and r['jax_over_torch'] is None and torch is not None:
            note += ', no PyTorch reference'
        lines.append(f"| {r['model']} ({r['config']}) | {r['framework']} | {r['device']} | "
                     f"{r['batch']} | {r['steps_per_s']:.1f} | {r['min']:.1f}-{r['max']:.1f} | "
                     f"{r['images_per_s']:.0f} | {r['first_step_s']:.2f} | "
                     f"{_f(r['jax_over_torch'], '.2f')} | {note} |")
    for s in report['skipped']:
        lines.append(f"| {s['model']} | | | | | | | | | {s['status']}: {s['reason']} |")
    row = report['row']
    if row is not None:
        if row['status'] == 'ok':
            note = (f"{row['steps']} steps: {row['wall_s']:.1f} s wall (process start, data, "
                    f"compilation and eval included; {row['train_eval_s']:.1f} s train + eval), "
                    f"test −ELBO {row['neg_elbo']:.2f} (published {row['published']})")
        else:
            note = f"{row['status']}: {row.get('reason', '')}"
        lines.append(f"| row {ROW} | jax | {report['header']['backend']} | | | | | | | {note} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='mlp,conv,hvae,vdvae',
                        help=f'comma separated, of {",".join(MODELS)}')
    parser.add_argument('--quick', action='store_true', help='2 rounds of ~0.2 s blocks')
    parser.add_argument('--skip_row', action='store_true', help=f'do not run the {ROW} row')
    parser.add_argument('--row_data_dir', default=None, help='TFDS data_dir with binarized_mnist '
                        '(default: $TFDS_DATA_DIR, else ../shared/data/tfds)')
    parser.add_argument('--row_arg', default='', help="the row's --arg, e.g. 'steps=1000' "
                        '(default: its full protocol)')
    parser.add_argument('--time_budget', type=float, default=420.0,
                        help='seconds from the start after which nothing new starts')
    default_out = Path(os.environ['OUT']) / 'accelerator_check.json' if os.environ.get('OUT') \
        else None
    parser.add_argument('--out', default=default_out, type=Path, help='JSON report path')
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(',') if m.strip()]
    if unknown := set(names) - set(MODELS):
        parser.error(f'unknown --models {sorted(unknown)}; choose from {sorted(MODELS)}')
    signal.signal(signal.SIGTERM, _on_sigterm)
    deadline = START + args.time_budget
    speed_deadline = deadline - (0 if args.skip_row else ROW_RESERVE_S)
    rounds, block_s, idle_s = (2, 0.2, 0.0) if args.quick else (5, 1.0, 2.0)

    device = 'cpu'
    if torch is not None and torch.cuda.is_available():
        device = 'cuda'
        # XLA's GPU default: TF32 for float32 matmuls and convolutions, autotuned kernels.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    report = {'header': header(device), 'throughput': [], 'skipped': [], 'row': None,
              'notes': [], 'args': {k: str(v) for k, v in vars(args).items()}}
    print(json.dumps(report['header'], indent=1), flush=True)
    notes = report['notes']
    if torch is None:
        notes.append('PyTorch is not installed: JAX columns only (pip install -e ".[bench]").')
    notes.append("JAX: the experiment's pmapped train step on 1 device (donated state, batches "
                 "on device). PyTorch: benchmarks/train_speed.py's reference of the same "
                 "network, loss and Adam; iaf and vdvae have none.")

    def save():
        report['elapsed_s'] = time.perf_counter() - START
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(args.out, json.dumps(report, indent=1) + '\n')

    try:
        for name in names:
            left = speed_deadline - time.perf_counter()
            if left < MODEL_MIN_S[args.quick]:
                report['skipped'].append({'model': name, 'status': 'skipped',
                                          'reason': f'time budget ({max(left, 0):.0f} s left)'})
                continue
            try:
                result = benchmark(name, rounds, block_s, device, idle_s, deadline=speed_deadline)
                report['throughput'] += speed_rows(name, *result, device)
            except Exception as e:  # one model's failure must not lose the others' numbers
                traceback.print_exc()
                reason = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300]
                report['skipped'].append({'model': name, 'status': 'failed', 'reason': reason})
            save()
        if not args.skip_row:
            if torch is not None and device == 'cuda':
                torch.cuda.empty_cache()  # the row's process needs the memory
            data_dir = Path(args.row_data_dir or os.environ.get('TFDS_DATA_DIR')
                            or ROOT.parent / 'shared' / 'data' / 'tfds').resolve()
            report['row'] = run_row(data_dir, args.row_arg, deadline - time.perf_counter())
            save()
    except Interrupted:
        notes.append('Interrupted by SIGTERM: the table has what was measured before it.')
    if warning := load_warning([r['other_cpu'] or 0.0 for r in report['throughput']]):
        notes.append(warning)
    print('\n' + table(report))
    print('\nNotes:\n' + '\n'.join(f'- {n}' for n in notes))
    save()
    if args.out:
        print(f'JSON: {args.out}')


if __name__ == '__main__':
    main()
