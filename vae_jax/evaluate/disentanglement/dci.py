"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018, "A Framework
for the Quantitative Evaluation of Disentangled Representations"), with disentanglement_lib's
protocol and defaults.

One classifier per factor predicts the factor's value from all d codes, trained on `num_train`
= 10000 random observations and tested on `num_test` = 5000 fresh ones. Its feature importances
form column k of the importance matrix R ``[d, F]``. With P = R normalised per code (row) or per
factor (column) and entropies in base F (rows) or base d (columns):
  disentanglement = sum_j rho_j (1 - H_F(P_j.)),  rho_j = sum_k R_jk / sum R (code importance);
  completeness    = sum_k w_k (1 - H_d(P_.k)),    w_k = sum_j R_jk / sum R (factor importance);
  informativeness = the classifiers' mean accuracy (train and test) over factors.
(Like disentanglement_lib, 1e-11 is added to R before normalising, so an all-zero row or column
counts as uniform, and an all-zero R gives equal weights.)

The classifier is scikit-learn's ``GradientBoostingClassifier()`` with its defaults (100 depth-3
trees per class, learning rate 0.1), the importance its impurity-based ``feature_importances_``:
exactly what disentanglement_lib used, so scores are comparable; scikit-learn is also
well-maintained and already a dependency of this project. It is slow: one 40-class factor on
10000 points x 10 codes takes 150-210 s on one core (4000 trees); dSprites' five factors (3, 6,
40, 32, 32 values) took 442 s on a loaded 2-core machine. `n_jobs` fits the factors in parallel (the result is the same);
``model='random_forest'`` (Eastwood & Williams also used random forests) is a quicker, *not
comparable* alternative: 100 fully grown trees that consider every code at every split
(``max_features=None``; with the default sqrt(d) random codes per split, splits on irrelevant
codes dilute the importances: D = 0.88 for the factors themselves in a small test). It fits a
40-class factor in 15 s (one code holds it) to 42 s (noise codes); dSprites took 57 s.
"""

import functools
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from vae_jax.evaluate.disentanglement import sampling

MODELS = {
    'gbt': GradientBoostingClassifier,
    'random_forest': functools.partial(RandomForestClassifier, max_features=None),
}


def _fit_factor(model, seed, train_codes, train_y, test_codes, test_y):
    clf = MODELS[model](random_state=seed).fit(train_codes, train_y)
    return (np.abs(clf.feature_importances_), float(clf.score(train_codes, train_y)),
            float(clf.score(test_codes, test_y)))


def fit_order(classes) -> list[int]:
    """The factors' indices, most values first: the order their classifiers are fitted in.

    A gradient-boosted classifier fits one tree per class per round, so its time grows with the
    factor's number of values. With `n_jobs` workers each taking the next factor when free, the
    largest first leaves the small ones to fill in at the end: dSprites' factors (3, 6, 40, 32,
    32 values) on 2 workers end after 64 class-units in this order (40 + 6 + 3 beside 32 + 32),
    after 70 in their own (3 + 40 beside 6 + 32 + 32). At the quick β-VAE run's 1,000 train and
    500 test points, on 2 cores: 22.9 s against 25.6 (1.12×, 3 alternating rounds, the same
    importance matrix; `python benchmarks/dci_order.py`). Each fit is the same in any order.
    """
    return sorted(range(len(classes)), key=lambda k: (-classes[k], k))


def importance_matrix(train_codes: np.ndarray, train_factors: np.ndarray,
                      test_codes: np.ndarray, test_factors: np.ndarray, *, model: str = 'gbt',
                      seeds=None, n_jobs: int = 1,
                      progress: sampling.Progress | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fits one classifier per factor.

    Args:
      train_codes: ``[n, d]``; train_factors: int ``[n, F]``; test ``[m, d]``, ``[m, F]``.
      model: 'gbt' (the protocol) or 'random_forest'.
      seeds: F ints, the classifiers' random_state (tie-breaking among equally good splits);
        None means 0 for all.
      n_jobs: factors fitted in parallel (joblib processes).

    Returns:
      (importance ``[d, F]``, train accuracy ``[F]``, test accuracy ``[F]``).
    """
    if model not in MODELS:
        raise ValueError(f'unknown DCI model {model!r}; expected one of {sorted(MODELS)}')
    num_factors = train_factors.shape[1]
    seeds = [0] * num_factors if seeds is None else [int(s) for s in seeds]
    classes = [len(np.unique(train_factors[:, k])) for k in range(num_factors)]
    order = fit_order(classes)
    jobs = (delayed(_fit_factor)(model, seeds[k], train_codes, train_factors[:, k], test_codes,
                                 test_factors[:, k]) for k in order)
    results = [None] * num_factors
    start = time.monotonic()
    for done, (k, result) in enumerate(
            zip(order, Parallel(n_jobs=n_jobs, return_as='generator')(jobs)), 1):
        results[k] = result
        if progress is not None:
            progress(f'dci: {model} fitted for factor {k + 1}/{num_factors} ({classes[k]} values; '
                     f'{done} of {num_factors} done), {time.monotonic() - start:.0f} s')
    importance = np.stack([r[0] for r in results], axis=1)
    return importance, np.array([r[1] for r in results]), np.array([r[2] for r in results])


def _one_minus_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """1 - entropy of ``p + 1e-11`` normalised along `axis`, in base p.shape[axis]."""
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    base = p.shape[axis]
    if base == 1:
        return np.ones(p.shape[1 - axis])  # One outcome: no uncertainty.
    return 1.0 + np.sum(p * np.log(p), axis=axis) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> dict:
    """Disentanglement and completeness of an importance matrix ``[d, F]`` (>= 0).

    Returns:
      {'disentanglement', 'completeness': floats in [0, 1], 'per_code_disentanglement': [d],
       'per_factor_completeness': [F], 'code_importance': [d] (rho, sums to 1)}.
    """
    importance = np.asarray(importance, np.float64)
    per_code = _one_minus_entropy(importance, axis=1)
    per_factor = _one_minus_entropy(importance, axis=0)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    code_importance = weights.sum(axis=1) / weights.sum()
    factor_importance = weights.sum(axis=0) / weights.sum()
    return {
        'disentanglement': float(np.sum(per_code * code_importance)),
        'completeness': float(np.sum(per_factor * factor_importance)),
        'per_code_disentanglement': per_code.tolist(),
        'per_factor_completeness': per_factor.tolist(),
        'code_importance': code_importance.tolist(),
    }


def dci_from_codes(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray,
                   test_factors: np.ndarray, *, model: str = 'gbt', seeds=None,
                   n_jobs: int = 1, progress: sampling.Progress | None = None) -> dict:
    """DCI from codes ``[n, d]``/``[m, d]`` and int factors ``[n, F]``/``[m, F]``.

    Returns:
      `dci_from_importance`'s dict plus 'informativeness_train', 'informativeness_test' (mean
      accuracies), their per-factor lists 'train_accuracy', 'test_accuracy', 'importance_matrix'
      ``[d][F]`` and 'model'.
    """
    importance, train_acc, test_acc = importance_matrix(
        train_codes, train_factors, test_codes, test_factors, model=model, seeds=seeds,
        n_jobs=n_jobs, progress=progress)
    return {
        **dci_from_importance(importance),
        'informativeness_train': float(np.mean(train_acc)),
        'informativeness_test': float(np.mean(test_acc)),
        'train_accuracy': train_acc.tolist(), 'test_accuracy': test_acc.tolist(),
        'importance_matrix': importance.tolist(), 'model': model,
    }


def dci(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
        rng: np.random.Generator, *, num_train: int = 10_000, num_test: int = 5_000,
        model: str = 'gbt', n_jobs: int = 1, chunk: int = 1024,
        progress: sampling.Progress | None = None) -> dict:
    """DCI of `represent` on `ground_truth` (see the module docstring).

    Returns:
      `dci_from_codes`'s dict plus 'num_train', 'num_test'.
    """
    train = sampling.sample_codes(ground_truth, represent, num_train, rng, chunk=chunk,
                                  progress=progress, name='dci', unit='train points')
    test = sampling.sample_codes(ground_truth, represent, num_test, rng, chunk=chunk,
                                 progress=progress, name='dci', unit='test points')
    seeds = rng.integers(2**31 - 1, size=len(ground_truth.factor_sizes))
    return {**dci_from_codes(*train, *test, model=model, seeds=seeds, n_jobs=n_jobs,
                             progress=progress),
            'num_train': num_train, 'num_test': num_test}
