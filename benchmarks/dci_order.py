"""DCI's classifier fits, largest factor first (`dci.fit_order`) against the factors' own order.

    python benchmarks/dci_order.py              # 3 alternating rounds (~2.5 min on 2 cores)
    python benchmarks/dci_order.py --rounds 5

`dci.importance_matrix` with the protocol's gradient-boosted trees on `os.cpu_count()` joblib
processes, at the quick β-VAE run's sizes: 1,000 train and 500 test points of 10 codes (5 that
hold the dSprites factors, with noise, and 5 of noise), the factors with dSprites' numbers of
values (3, 6, 40, 32, 32). The other side replaces `fit_order` with the identity, which is how
the factors were fitted before. Prints seconds per side (median, range), the ratio and that the
importance matrices are equal.
"""

import argparse
import importlib
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from timing import wait_for_idle  # noqa: E402
# The module (the package's `dci` is the metric function of the same name).
dci = importlib.import_module('vae_jax.evaluate.disentanglement.dci')

SIZES = (3, 6, 40, 32, 32)


def data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(codes [n, 10], factors [n, 5])."""
    factors = np.stack([rng.integers(0, k, n) for k in SIZES], axis=1)
    held = factors / np.array(SIZES) + 0.1 * rng.normal(size=factors.shape)
    return np.concatenate([held, rng.normal(size=(n, 5))], axis=1), factors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings('ignore')  # scikit-learn: "more classes than half the samples"
    rng = np.random.default_rng(0)
    (train_codes, train_factors), (test_codes, test_factors) = data(1000, rng), data(500, rng)
    largest_first = dci.fit_order
    sides = {'largest first': largest_first, "factors' order": lambda c: list(range(len(c)))}
    seconds = {name: [] for name in sides}
    matrices = {}
    names = list(sides)
    for r in range(args.rounds):
        for name in names[r % 2:] + names[:r % 2]:
            wait_for_idle(15)
            dci.fit_order = sides[name]
            start = time.perf_counter()
            matrices[name] = dci.importance_matrix(train_codes, train_factors, test_codes,
                                                   test_factors, n_jobs=os.cpu_count() or 1)[0]
            seconds[name].append(time.perf_counter() - start)
            print(f'round {r} {name}: {seconds[name][-1]:.1f} s', flush=True)
    dci.fit_order = largest_first
    print('\n| order | s (median, min-max) |\n|---|---|')
    for name in names:
        s = seconds[name]
        print(f'| {name} | {statistics.median(s):.1f} ({min(s):.1f}-{max(s):.1f}) |')
    ratio = (statistics.median(seconds["factors' order"])
             / statistics.median(seconds['largest first']))
    print(f"\nfactors' order / largest first: {ratio:.2f}× "
          f'({os.cpu_count()} cores, {args.rounds} rounds); importance matrices equal: '
          f'{np.array_equal(*matrices.values())}')


if __name__ == '__main__':
    main()
