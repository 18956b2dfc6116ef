"""The Separated Attribute Predictability score (Kumar et al. 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations"), with disentanglement_lib's protocol
and defaults for discrete factors.

For every (code j, factor k) a linear classifier predicts factor k from code j alone, trained on
`num_train` = 10000 random observations; S[j, k] is its accuracy on `num_test` = 5000 fresh
ones. SAP = mean over factors of (the largest - the second largest S[., k]): high when each
factor is predictable from one code only. A single feature can only split its line into
intervals, so S stays low for factors with many values even for a perfect code.

The classifier is scikit-learn's ``LinearSVC(C=0.01, class_weight='balanced')`` (one-vs-rest,
squared hinge, L2), unstandardised: the estimator disentanglement_lib used, so scores are
comparable; scikit-learn is also well-maintained and already a dependency of this project.
disentanglement_lib ran liblinear's dual solver (the old default), which often stops at its
iteration limit; here ``dual=False`` solves the same objective in the primal (the right solver
for n >> 1 feature: fast and converged), so values match a converged disentanglement_lib fit.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from vae_jax.evaluate.disentanglement import sampling


def sap_score_matrix(train_codes: np.ndarray, train_factors: np.ndarray,
                     test_codes: np.ndarray, test_factors: np.ndarray) -> np.ndarray:
    """Test accuracy of a single-code linear classifier for every (code, factor).

    Args:
      train_codes: ``[n, d]``; train_factors: int ``[n, F]``; test ``[m, d]``, ``[m, F]``.

    Returns:
      ``[d, F]`` accuracies in [0, 1].
    """
    num_codes, num_factors = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((num_codes, num_factors))
    for j in range(num_codes):
        for k in range(num_factors):
            clf = LinearSVC(C=0.01, class_weight='balanced', dual=False)
            with warnings.catch_warnings():
                # A constant (collapsed) code is a valid input; liblinear may then warn.
                warnings.simplefilter('ignore', ConvergenceWarning)
                clf.fit(train_codes[:, j:j + 1], train_factors[:, k])
            scores[j, k] = np.mean(clf.predict(test_codes[:, j:j + 1]) == test_factors[:, k])
    return scores


def sap_from_score_matrix(scores: np.ndarray) -> dict:
    """SAP of a score matrix ``[d, F]`` (d >= 2).

    Returns:
      {'sap': float, 'per_factor_gap': [F], the largest minus the second largest score}.
    """
    top = np.sort(np.asarray(scores, np.float64), axis=0)
    gaps = top[-1] - top[-2]
    return {'sap': float(np.mean(gaps)), 'per_factor_gap': gaps.tolist()}


def sap_from_codes(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray,
                   test_factors: np.ndarray) -> dict:
    """SAP from codes and int factors; `sap_from_score_matrix`'s dict plus 'score_matrix'."""
    scores = sap_score_matrix(train_codes, train_factors, test_codes, test_factors)
    return {**sap_from_score_matrix(scores), 'score_matrix': scores.tolist()}


def sap(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
        rng: np.random.Generator, *, num_train: int = 10_000, num_test: int = 5_000,
        chunk: int = 1024, progress: sampling.Progress | None = None) -> dict:
    """SAP of `represent` on `ground_truth` (see the module docstring).

    Returns:
      `sap_from_codes`'s dict plus 'num_train', 'num_test'.
    """
    train = sampling.sample_codes(ground_truth, represent, num_train, rng, chunk=chunk,
                                  progress=progress, name='sap', unit='train points')
    test = sampling.sample_codes(ground_truth, represent, num_test, rng, chunk=chunk,
                                 progress=progress, name='sap', unit='test points')
    return {**sap_from_codes(*train, *test), 'num_train': num_train, 'num_test': num_test}
