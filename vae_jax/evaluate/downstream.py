"""Downstream uses of a trained VAE: a linear probe on posterior means, and anomaly detection.

The anomaly functions take a per-example score (higher = more anomalous, e.g. -ELBO or the
negative IWAE bound in nats) from the caller, so they only organise the data and compute AUROC.
Two standard setups (e.g. Nalisnick et al. 2019, "Do Deep Generative Models Know What They
Don't Know?"):
  (a) `ood_auroc`: a model trained on MNIST scores the MNIST test set (in) against the
      Fashion-MNIST test set (out);
  (b) `heldout_class_auroc`: a model trained without one class (`ClassSubset` of the train
      split) scores that class (out) against the others (in) on the test split.
"""

from typing import Any, Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from vae_jax.evaluate.latents import collect_posteriors, map_source


def linear_probe(train_features, train_labels, test_features, test_labels, *,
                 C: float = 1.0, max_iter: int = 1000) -> dict[str, Any]:
    """Multinomial logistic regression fit on train features, scored on test features.

    Features are standardised with the train split's mean and std (a feature constant on train
    is only centred), so one C suits latents of any scale. The model is sklearn's LogisticRegression with
    its default L2 penalty, objective 1/2 ||W||^2 + C * sum_i cross_entropy_i, solved by
    L-BFGS; softmax (multinomial) over the classes when there are more than two. L-BFGS from a
    zero start has no randomness, so the result is a function of the data alone.

    Args:
      train_features: [n, ...] (flattened to [n, d]), e.g. posterior means [n, z].
      train_labels: [n] int.
      test_features: [m, ...] with the same d.
      test_labels: [m] int.
      C: inverse L2 strength.
      max_iter: L-BFGS iterations; `converged` says whether it stopped before.

    Returns:
      {'test_accuracy', 'train_accuracy': floats in [0, 1], 'converged': bool,
       'num_train', 'num_test', 'num_features': ints, 'C', 'penalty', 'solver'}.
    """
    x_train = np.asarray(train_features, np.float64).reshape(len(train_features), -1)
    x_test = np.asarray(test_features, np.float64).reshape(len(test_features), -1)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C, solver='lbfgs', max_iter=max_iter)
    # One BLAS thread: OpenBLAS's spinning threads made this fit (5000 x 784 MNIST pixels) take
    # 24-37 s instead of 1.3-2.6 s on a busy 2-core machine, and the numbers no longer depend
    # on the machine's thread count.
    with threadpool_limits(limits=1, user_api='blas'):
        clf.fit(scaler.transform(x_train), train_labels)
        test_accuracy = clf.score(scaler.transform(x_test), test_labels)
        train_accuracy = clf.score(scaler.transform(x_train), train_labels)
    return {
        'test_accuracy': float(test_accuracy), 'train_accuracy': float(train_accuracy),
        'converged': bool(np.all(clf.n_iter_ < max_iter)),
        'num_train': len(x_train), 'num_test': len(x_test), 'num_features': x_train.shape[1],
        'C': float(C), 'penalty': 'l2', 'solver': 'lbfgs',
    }


def probe_posterior_means(encode: Callable, train_source, test_source, *, batch_size: int = 500,
                          max_train: int | None = None, max_test: int | None = None,
                          C: float = 1.0, max_iter: int = 1000) -> dict[str, Any]:
    """`linear_probe` on the posterior means of two splits, with the splits' labels.

    Args:
      encode: x [b, ...], y [b] -> (mean [b, z], logvar [b, z]), as in `collect_posteriors`.
      train_source, test_source: labelled `Source`s.
      max_train, max_test: use the first this many examples of each; None means all.
    """
    train = collect_posteriors(encode, train_source, batch_size=batch_size,
                               max_examples=max_train)
    test = collect_posteriors(encode, test_source, batch_size=batch_size, max_examples=max_test)
    return linear_probe(train['mean'], train['label'], test['mean'], test['label'], C=C,
                        max_iter=max_iter)


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve for telling `scores_out` (anomalies) from `scores_in`.

    Computed as the Mann-Whitney statistic U / (n_in * n_out) = P(s_out > s_in)
    + 1/2 P(s_out = s_in), with tied scores given their average rank. This equals the
    trapezoidal ROC area (sklearn's roc_auc_score) but needs only a sort, no label vector, and
    states the tie rule: a tie counts one half, so a constant score gives exactly 0.5.

    Args:
      scores_in: [n_in] scores of normal examples.
      scores_out: [n_out] scores of anomalies; higher means more anomalous. +-inf is allowed
        (an example a model finds impossible), NaN is not.

    Returns:
      [] in [0, 1]; 1 when every anomaly scores above every normal example, 0.5 at chance.
    """
    s_in = np.asarray(scores_in, np.float64).ravel()
    s_out = np.asarray(scores_out, np.float64).ravel()
    if not (s_in.size and s_out.size):
        raise ValueError(f'auroc needs scores in both groups; got {s_in.size} in, '
                         f'{s_out.size} out')
    scores = np.concatenate([s_in, s_out])
    if np.isnan(scores).any():
        raise ValueError(f'{int(np.isnan(scores).sum())} anomaly scores are NaN')
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each group of ties.
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # Average rank of the group.
    n_in, n_out = s_in.size, s_out.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def auroc_summary(scores_in, scores_out) -> dict[str, Any]:
    """{'auroc', 'num_in', 'num_out', 'mean_score_in', 'mean_score_out'} of two score sets."""
    return {'auroc': auroc(scores_in, scores_out),
            'num_in': int(len(scores_in)), 'num_out': int(len(scores_out)),
            'mean_score_in': float(np.mean(scores_in)),
            'mean_score_out': float(np.mean(scores_out))}


def score_source(score_fn: Callable, source, *, batch_size: int = 500,
                 max_examples: int | None = None):
    """Per-example scores of a `Source`, in dataset order.

    Args:
      score_fn: x [b, ...], y [b] -> [b] scores (e.g. -ELBO in nats per example). y is the
        source's own label, meaningless to a conditional model on another dataset.

    Returns:
      (scores float64 [n], labels int32 [n]).
    """
    scores, labels = map_source(score_fn, source, batch_size=batch_size,
                                max_examples=max_examples)
    return scores.astype(np.float64), labels


def ood_auroc(score_fn: Callable, in_source, out_source, *, batch_size: int = 500,
              max_examples: int | None = None) -> dict[str, Any]:
    """Setup (a): AUROC of `out_source` (e.g. Fashion-MNIST test) against `in_source` (MNIST test).

    Returns:
      {'auroc', 'num_in', 'num_out', 'mean_score_in', 'mean_score_out'}.
    """
    kw = dict(batch_size=batch_size, max_examples=max_examples)
    scores_in, _ = score_source(score_fn, in_source, **kw)
    scores_out, _ = score_source(score_fn, out_source, **kw)
    return auroc_summary(scores_in, scores_out)


def class_auroc(scores, labels, heldout_class: int) -> dict[str, Any]:
    """AUROC of the examples labelled `heldout_class` (out) against all others (in).

    Args:
      scores: [n] per-example scores; labels: [n] int.

    Returns:
      As `ood_auroc`, plus 'heldout_class'.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    out = labels == heldout_class
    return dict(auroc_summary(scores[~out], scores[out]), heldout_class=int(heldout_class))


def heldout_class_auroc(score_fn: Callable, source, heldout_class: int, *, batch_size: int = 500,
                        max_examples: int | None = None) -> dict[str, Any]:
    """Setup (b): scores a labelled split (the test split) and runs `class_auroc` on it."""
    scores, labels = score_source(score_fn, source, batch_size=batch_size,
                                  max_examples=max_examples)
    return class_auroc(scores, labels, heldout_class)
