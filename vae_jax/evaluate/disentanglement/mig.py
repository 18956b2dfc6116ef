"""The Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders"), with disentanglement_lib's protocol and defaults.

Chen et al. estimate I(z_j; v_k) with the encoder's full posterior; disentanglement_lib (and
this module) instead discretise the posterior means of `num_train` = 10000 random observations:
each code into `num_bins` = 20 equal-width bins between its min and max (``np.histogram``
edges). The mutual information between every discretised code and every factor is the plug-in
(empirical joint histogram) estimate, ``sklearn.metrics.mutual_info_score``, in nats; the
factor entropy H(v_k) is the same estimate of I(v_k; v_k). Then

    MIG = mean over factors k of (largest_j I(z_j; v_k) - second largest_j I(z_j; v_k)) / H(v_k).

scikit-learn is used for the estimate because it is well-maintained, already a dependency of
this project, and the function disentanglement_lib used, so scores are comparable. The plug-in
estimate is biased upwards for small samples (noise codes get I > 0), and with more factor
values than bins even a perfect code cannot reach 1 (a 40-valued factor in 20 bins: at most
log 20 / log 40 = 0.81).
"""

import numpy as np
from sklearn.metrics import mutual_info_score

from vae_jax.evaluate.disentanglement import sampling


def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per code.

    Args:
      codes: ``[n, d]``.

    Returns:
      int ``[n, d]`` bin indices in [1, num_bins] (the maximum falls in the last bin).
    """
    codes = np.asarray(codes, np.float64)
    out = np.empty(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=num_bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in mutual information between discrete columns, in nats.

    Args:
      a: int ``[n, p]``; b: int ``[n, q]``.

    Returns:
      ``[p, q]``: m[i, j] = I(a[:, i]; b[:, j]).
    """
    return np.array([[mutual_info_score(a[:, i], b[:, j]) for j in range(b.shape[1])]
                     for i in range(a.shape[1])]).reshape(a.shape[1], b.shape[1])


def discrete_entropy(a: np.ndarray) -> np.ndarray:
    """Plug-in entropy of each discrete column of int ``[n, q]``, in nats: ``[q]``."""
    return np.array([mutual_info_score(a[:, j], a[:, j]) for j in range(a.shape[1])])


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict:
    """MIG of codes ``[n, d]`` for int factors ``[n, F]``.

    A factor that takes a single value in the sample has no entropy; its gap is undefined,
    reported as None and left out of the mean (disentanglement_lib would return NaN). With a
    single code the second-largest MI is 0.

    Returns:
      {'mig': float, 'per_factor_gap': [F] normalised gaps, 'mutual_info': [d][F] nats,
       'factor_entropy': [F] nats}.
    """
    mutual_info = discrete_mutual_info(discretize(codes, num_bins), np.asarray(factors))
    entropy = discrete_entropy(np.asarray(factors))
    top = np.sort(mutual_info, axis=0)[::-1]  # [d, F], descending per factor.
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    defined = entropy > 0
    gaps = np.where(defined, (top[0] - second) / np.where(defined, entropy, 1.0), np.nan)
    return {
        'mig': float(np.mean(gaps[defined])) if defined.any() else float('nan'),
        'per_factor_gap': [float(g) if ok else None for g, ok in zip(gaps, defined)],
        'mutual_info': mutual_info.tolist(),
        'factor_entropy': entropy.tolist(),
    }


def mig(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
        rng: np.random.Generator, *, num_train: int = 10_000, num_bins: int = 20,
        chunk: int = 1024, progress: sampling.Progress | None = None) -> dict:
    """MIG of `represent` on `ground_truth` (see the module docstring).

    Returns:
      `mig_from_codes`'s dict plus 'num_train' and 'num_bins'.
    """
    codes, factors = sampling.sample_codes(ground_truth, represent, num_train, rng, chunk=chunk,
                                           progress=progress, name='mig')
    return {**mig_from_codes(codes, factors, num_bins), 'num_train': num_train,
            'num_bins': num_bins}
