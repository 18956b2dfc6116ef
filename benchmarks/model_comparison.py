"""The model families on one protocol: train each for the same number of steps, evaluate the
k-sample IWAE bound on the static binarized MNIST test set, print a Markdown table.

    python benchmarks/model_comparison.py --root=runs/comparison              # 20,000 steps
    python benchmarks/model_comparison.py --root=runs/comparison --steps=2000 --k=100 --examples=1000

Every row is `launch.py` (train) then `launch.py --mode=eval` in ROOT/<row>; a row whose eval
results exist is not rerun, an interrupted one resumes from its checkpoint, so rerunning the
command finishes the table and a finished table prints without training. The table lists every
finished row in ROOT (`--rows` picks what this call trains). The table goes to
stdout and to ROOT/comparison.md and ROOT/comparison.json.

Protocol, the same for every row: Larochelle's static binarized MNIST (50k train, 10k test),
batch 100, Adam 5e-4 constant, `--steps` steps, the row's own network, prior, posterior and
objective from its experiment file; rows trained on the ELBO warm β up from 0 over the first
third of the steps. The test NLL is the k-sample bound (`eval.iwae_samples`) on the first
`--examples` test images, with the run's eval key; the -ELBO is on the same images.
Each row's published value is from its paper's full protocol (thousands of epochs), given for
scale, not as the target of this short run.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# row -> (experiment file and argument, published -log p(x) on MNIST with its source, or '').
ROWS = {
    'vae': ('vampprior.py:prior=standard_normal', ''),
    'iwae_k5': ('vampprior.py:prior=standard_normal', ''),
    'vampprior': ('vampprior.py', '85.57 (Tomczak & Welling 2018, Table 2; 2000 epochs)'),
    'iaf': ('iaf.py', ''),
    'hvae': ('hvae.py:data=static', '85.33 (Burda et al. 2015, Table 1, VAE 2 layers, dynamic)'),
    'vdvae': ('vdvae.py', '79.09 (Efficient-VDVAE, Hazami et al. 2022; a far larger model)'),
}
EXTRA = {'iwae_k5': ['--config.objective.name=iwae', '--config.objective.num_samples=5',
                     '--config.objective.kl_warmup_steps=0']}


def _results(workdir: Path):
    files = sorted((workdir / 'results').glob('eval_*.json'))
    if not files:
        return None
    data = json.loads(files[-1].read_text())
    return data if 'likelihood' in data else None


def _run(cmd, log):
    with open(log, 'a') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        start = time.monotonic()
        subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
        f.write(f'# seconds {time.monotonic() - start:.1f}\n')


def run_row(name, root: Path, steps: int, k: int, examples: int) -> dict:
    workdir = root / name
    spec, published = ROWS[name]
    config, _, arg = spec.partition(':')
    arg = ','.join(filter(None, [arg, f'steps={steps}']))
    start = time.monotonic()
    if _results(workdir) is None:
        common = [f'--config.eval.iwae_samples={k}', f'--config.eval.iwae_examples={examples}']
        train = [sys.executable, 'launch.py', f'--config=experiments/{config}:{arg}',
                 f'--workdir={workdir}', '--config.batch_size=100',
                 '--config.optim.learning_rate=5e-4', '--config.optim.schedule=constant',
                 '--config.optim.eps=1e-8', '--config.data.name=binarized_mnist',
                 '--config.data.binarize=none', '--config.eval_every=0',
                 '--config.eval.probe_train_examples=2000'] + common + EXTRA.get(name, [])
        if name != 'iwae_k5':
            train.append(f'--config.objective.kl_warmup_steps={steps // 3}')
        root.mkdir(parents=True, exist_ok=True)
        _run(train, root / f'{name}.log')
        _run([sys.executable, 'launch.py', '--mode=eval', f'--workdir={workdir}'],
             root / f'{name}.log')
    results = _results(workdir)
    lik = results['likelihood']
    label = spec + ''.join(' ' + e.removeprefix('--config.') for e in EXTRA.get(name, [])[:2])
    run_config = json.loads((workdir / 'config.json').read_text())
    return {'row': name, 'config': label, 'steps': results['step'], 'nll': lik['nll'],
            'neg_elbo': lik['neg_elbo'], 'kl': lik['kl'], 'examples': lik['count'],
            'k': run_config['eval']['iwae_samples'],
            'active_units': results['latents']['active_units'],
            'latents': results['latents']['latents'], 'published': published,
            'seconds_this_call': round(time.monotonic() - start),
            'train_and_eval_seconds': _timings(root / f'{name}.log')}


def _timings(log: Path):
    """Seconds of the row's train + eval commands, from the times written into its log."""
    if not log.exists():
        return None
    stamps = [float(line.split()[2]) for line in log.read_text().splitlines()
              if line.startswith('# seconds ')]
    return round(sum(stamps)) if stamps else None


def table(rows) -> str:
    lines = ["| model | config | steps | test images | test NLL (IWAE bound) | test -ELBO | KL | "
             "active units | train + eval s | published (full protocol) |",
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['row']} | `{r['config']}` | {r['steps']} | {r['examples']} | "
                     f"{r['nll']:.2f} (k={r['k']}) | "
                     f"{r['neg_elbo']:.2f} | {r['kl']:.2f} | {r['active_units']} of "
                     f"{r['latents']} | {r['train_and_eval_seconds']} | "
                     f"{r['published'] or '—'} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='runs/comparison')
    parser.add_argument('--steps', type=int, default=20_000)
    parser.add_argument('--k', type=int, default=1000)
    parser.add_argument('--examples', type=int, default=0, help='test images; 0 = all 10k')
    parser.add_argument('--rows', default=','.join(ROWS))
    args = parser.parse_args()
    os.environ.setdefault('TFDS_DATA_DIR', str(ROOT.parent / 'shared' / 'data' / 'tfds'))
    root = Path(args.root).resolve()
    for name in args.rows.split(','):
        run_row(name, root, args.steps, args.k, args.examples)
    # The table: every row finished in ROOT, whichever call trained it.
    rows = [run_row(name, root, args.steps, args.k, args.examples)
            for name in ROWS if _results(root / name) is not None]
    text = table(rows)
    print(text)
    (root / 'comparison.md').write_text(text + '\n')
    (root / 'comparison.json').write_text(json.dumps(rows, indent=1) + '\n')


if __name__ == '__main__':
    main()
