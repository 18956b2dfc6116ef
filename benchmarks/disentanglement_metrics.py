"""Wall time of each disentanglement metric at disentanglement_lib's full sample sizes.

On procedural dSprites, with the representation either a fixed random projection of the pixels
to 10 codes (isolates the metrics' own cost: sampling, rendering, classifiers) or a trained
run's encoder (`--workdir`, adds the encoder's cost):

    python benchmarks/disentanglement_metrics.py                      # random projection
    python benchmarks/disentanglement_metrics.py --workdir runs/bq    # a trained model
    python benchmarks/disentanglement_metrics.py --scale 0.1          # the `quick` sizes
    python benchmarks/disentanglement_metrics.py --workdir runs/bq --scale 0.1 --memo both

`--memo both` runs the metrics with each factor combination encoded once (`compute_metrics`'
default, `sampling.memoize`) and with every draw encoded, alternating for `--rounds`, prints
both tables with the medians, and checks that the two give the same scores.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from vae_jax.data.dsprites import DSpritesSource  # noqa: E402
from vae_jax.evaluate.disentanglement import METRIC_NAMES, compute_metrics  # noqa: E402

HEADLINE = {'beta_vae': 'eval_accuracy', 'factor_vae': 'eval_accuracy', 'mig': 'mig',
            'dci': 'disentanglement', 'sap': 'sap'}


def random_projection(latents=10, seed=0):
    weights = np.random.default_rng(seed).normal(size=(64 * 64, latents)).astype(np.float32)
    return lambda x: np.asarray(x, np.float32).reshape(len(x), -1) @ weights / 64.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', default=None, help='a trained dSprites run')
    parser.add_argument('--scale', type=float, default=1.0, help='fraction of the sample sizes')
    parser.add_argument('--memo', choices=('both', 'on', 'off'), default='on',
                        help='encode each combination once (on), every draw (off), or both')
    parser.add_argument('--rounds', type=int, default=1, help='alternating rounds')
    parser.add_argument('--metrics', default=','.join(METRIC_NAMES),
                        help='comma-separated subset of ' + ', '.join(METRIC_NAMES))
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    if args.workdir:
        from vae_jax.evaluate.factor_report import representation_function
        from vae_jax.run import load_run
        run = load_run(args.workdir)
        represent, what = representation_function(run.fns, run.params), args.workdir
    else:
        represent, what = random_projection(), 'random projection of the pixels'
    sizes = dict(num_train=int(10_000 * args.scale), num_test=int(5_000 * args.scale),
                 num_variance_estimate=int(10_000 * args.scale))
    names = tuple(dict.fromkeys(args.metrics.split(',')))
    sides = {'both': (True, False), 'on': (True,), 'off': (False,)}[args.memo]
    times = {side: {name: [] for name in (*names, 'all')} for side in sides}
    scores, lines, differ = {}, [], False
    represent(DSpritesSource().sample_observations_from_factors(np.zeros((1, 5), int), None))
    for r in range(args.rounds):  # the first side alternates; the call above compiled encode
        for memo in (sides if r % 2 == 0 else sides[::-1]):
            results = compute_metrics(DSpritesSource(), represent, names, memoize=memo,
                                      n_jobs=os.cpu_count() or 1, progress=lines.append, **sizes)
            for name in names:
                times[memo][name].append(results[name]['wall_time_s'])
            times[memo]['all'].append(sum(m['wall_time_s'] for m in results.values()))
            numbers = {n: {k: v for k, v in results[n].items() if k != 'wall_time_s'}
                       for n in names}  # every number but the times, compared over all rounds
            differ |= scores.setdefault(memo, numbers) != numbers
    print(f'procedural dSprites, {what}; {sizes}; {os.cpu_count()} cores; {args.rounds} rounds')
    memo_lines = [line for line in lines if line.startswith('encoded ')]
    if memo_lines:
        print(memo_lines[0])
    columns = ' | '.join(f'{"memoized" if m else "every draw"} s (median, min-max)'
                         for m in sides)
    print(f'| metric | {columns} | score |')
    print('|---|' + '---|' * len(sides) + '---|')
    for name in (*names, 'all'):
        cells = ' | '.join(f'{statistics.median(times[m][name]):.1f} '
                           f'({min(times[m][name]):.1f}-{max(times[m][name]):.1f})'
                           for m in sides)
        head = HEADLINE.get(name)
        score = f'{head} {scores[sides[0]][name][head]:.3f}' if head else ''
        print(f'| {name} | {cells} | {score} |')
    if len(sides) == 2:
        same = scores[True] == scores[False] and not differ
        ratio = statistics.median(times[False]['all']) / statistics.median(times[True]['all'])
        print(f'every draw / memoized (all metrics, medians): {ratio:.2f}x; '
              f'{"every result identical in every round" if same else "results DIFFER"}')

if __name__ == '__main__':
    main()
