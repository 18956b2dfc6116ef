"""Wall time of each disentanglement metric at disentanglement_lib's full sample sizes.

On procedural dSprites, with the representation either a fixed random projection of the pixels
to 10 codes (isolates the metrics' own cost: sampling, rendering, classifiers) or a trained
run's encoder (`--workdir`, adds the encoder's cost):

    python benchmarks/disentanglement_metrics.py                      # random projection
    python benchmarks/disentanglement_metrics.py --workdir runs/bq    # a trained model
    python benchmarks/disentanglement_metrics.py --scale 0.1          # the `quick` sizes
"""

import argparse
import os
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
    results = compute_metrics(DSpritesSource(), represent, METRIC_NAMES,
                              n_jobs=os.cpu_count() or 1, progress=lambda line: None, **sizes)
    print(f'procedural dSprites, {what}; {sizes}; {os.cpu_count()} cores')
    print('| metric | wall time (s) | score |')
    print('|---|---|---|')
    for name in METRIC_NAMES:
        r = results[name]
        print(f'| {name} | {r["wall_time_s"]:.1f} | {HEADLINE[name]} {r[HEADLINE[name]]:.3f} |')


if __name__ == '__main__':
    main()
