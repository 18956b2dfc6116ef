"""The BetaVAE score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework"), with disentanglement_lib's protocol and defaults.

One point: choose a factor k uniformly; sample `batch_size` pairs of factor vectors, the two of
a pair sharing only the value of factor k (the other factors are drawn independently); the
feature is the mean over the pairs of |r(x1) - r(x2)| (r = posterior mean), the label is k. A
linear classifier trained on `num_train` points predicts k on `num_eval` fresh points; its
accuracy on those is the score. In a disentangled code the fixed factor's code has a small
mean difference, so a linear classifier finds it.

The classifier is scikit-learn's: a well-maintained library, already a dependency of this
project (linear probes), and the estimator disentanglement_lib used, so scores are comparable.
disentanglement_lib called ``LogisticRegression()`` with scikit-learn 0.20's defaults, i.e. the
liblinear solver, one-vs-rest, L2 penalty with C = 1, unstandardised features. Newer
scikit-learn changed that default (multinomial L-BFGS) and dropped multiclass liblinear, so the
same model is written out explicitly as one-vs-rest over liblinear binary problems.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from vae_jax.evaluate.disentanglement import sampling


def beta_vae_points(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
                    num_points: int, rng: np.random.Generator, *, batch_size: int = 64,
                    chunk: int = 1024, progress: sampling.Progress | None = None,
                    unit: str = 'points') -> tuple[np.ndarray, np.ndarray]:
    """Samples BetaVAE-score points: 2 x batch_size observations encoded per point.

    Returns:
      (features float64 ``[num_points, d]``: mean over the batch of ``|r(x1) - r(x2)|``,
       labels int64 ``[num_points]``: the factor the pairs share).
    """
    num_factors = len(ground_truth.factor_sizes)
    labels = rng.integers(num_factors, size=num_points)
    shape = (num_points, batch_size, num_factors)
    first = np.asarray(ground_truth.sample_factors(num_points * batch_size, rng), np.int64)
    second = np.asarray(ground_truth.sample_factors(num_points * batch_size, rng), np.int64)
    first, second = first.reshape(shape), second.reshape(shape)
    points = np.arange(num_points)
    second[points, :, labels] = first[points, :, labels]
    pairs = np.concatenate([first, second], axis=1)  # [n, 2B, F]: x1 of each pair, then x2.

    def feature(codes):  # [m, 2B, d] -> [m, d]
        return np.mean(np.abs(codes[:, :batch_size] - codes[:, batch_size:]), axis=1)

    features = sampling.encode_groups(ground_truth, represent, pairs, rng, feature, chunk=chunk,
                                      progress=progress, name='beta_vae', unit=unit)
    return features, labels


def beta_vae_from_features(train_features: np.ndarray, train_labels: np.ndarray,
                           eval_features: np.ndarray, eval_labels: np.ndarray, *,
                           random_state: int = 0) -> dict:
    """Fits the linear classifier on train points and scores it on both sets.

    Args:
      train_features: ``[n, d]``; train_labels: int ``[n]``; likewise eval ``[m, d]``, ``[m]``.
      random_state: passed to liblinear (which only uses it in its dual solvers).

    Returns:
      {'train_accuracy', 'eval_accuracy': floats in [0, 1]}; eval_accuracy is the score.
    """
    model = OneVsRestClassifier(LogisticRegression(solver='liblinear',
                                                   random_state=random_state))
    model.fit(train_features, train_labels)
    return {'train_accuracy': float(model.score(train_features, train_labels)),
            'eval_accuracy': float(model.score(eval_features, eval_labels))}


def beta_vae(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
             rng: np.random.Generator, *, batch_size: int = 64, num_train: int = 10_000,
             num_eval: int = 5_000, chunk: int = 1024,
             progress: sampling.Progress | None = None) -> dict:
    """The BetaVAE score of `represent` on `ground_truth` (see the module docstring).

    Encodes 2 x batch_size x (num_train + num_eval) observations (1.92M at the defaults).

    Returns:
      {'train_accuracy', 'eval_accuracy' (the score), 'num_train', 'num_eval', 'batch_size'}.
    """
    train = beta_vae_points(ground_truth, represent, num_train, rng, batch_size=batch_size,
                            chunk=chunk, progress=progress, unit='train points')
    evaluation = beta_vae_points(ground_truth, represent, num_eval, rng, batch_size=batch_size,
                                 chunk=chunk, progress=progress, unit='eval points')
    scores = beta_vae_from_features(*train, *evaluation, random_state=sampling.sklearn_seed(rng))
    return {**scores, 'num_train': num_train, 'num_eval': num_eval, 'batch_size': batch_size}
