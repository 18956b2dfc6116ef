"""The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising"), with
disentanglement_lib's protocol and defaults.

1. Global scale: the variance (ddof=1) of each code over `num_variance_estimate` random
   observations. Codes whose global standard deviation is below `prune_threshold` = 0.05 are
   inactive (collapsed to the prior: their posterior mean barely moves) and never vote; dividing
   by their near-zero scale would make them look informative. Kim & Mnih prune collapsed
   dimensions without giving a number; disentanglement_lib's `prune_dims(variances, threshold)`
   compares the *standard deviation* sqrt(variance) >= threshold, with threshold 0 in the code
   and 0.05 in the unsupervised study's metric config (the published scores), so 0.05 on the
   std (variance < 0.0025 is inactive) is used here.
2. One vote: choose a factor k uniformly, fix it to one random value, sample `batch_size`
   observations with the other factors free; divide each active code's variance (ddof=1) over
   the batch by its global variance; the argmin code and k are one (code, factor) vote.
3. The classifier is the majority vote: each code predicts the factor it voted for most often
   in the `num_train` training votes (ties: the lower factor). Its accuracy on `num_eval` fresh
   votes is the score.

No classifier library is needed: the majority vote is a count table. If no code is active the
score is 0 and the result says so ('note'). Unlike disentanglement_lib, whose num_active_dims
is the length of its boolean mask (i.e. all codes), num_active_dims here counts active codes.
"""

import numpy as np

from vae_jax.evaluate.disentanglement import sampling


def factor_vae_points(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
                      num_points: int, rng: np.random.Generator, *, batch_size: int = 64,
                      chunk: int = 1024, progress: sampling.Progress | None = None,
                      unit: str = 'votes') -> tuple[np.ndarray, np.ndarray]:
    """Samples FactorVAE-score votes before the argmin: batch_size observations per vote.

    Returns:
      (local_variances float64 ``[num_points, d]``: each code's variance (ddof=1) over the
       batch, labels int64 ``[num_points]``: the fixed factor).
    """
    num_factors = len(ground_truth.factor_sizes)
    labels = rng.integers(num_factors, size=num_points)
    factors = np.asarray(ground_truth.sample_factors(num_points * batch_size, rng), np.int64)
    factors = factors.reshape(num_points, batch_size, num_factors)
    points = np.arange(num_points)
    factors[points, :, labels] = factors[points, 0, labels][:, None]

    def local_variance(codes):  # [m, B, d] -> [m, d]
        return np.var(codes, axis=1, ddof=1)

    local = sampling.encode_groups(ground_truth, represent, factors, rng, local_variance,
                                   chunk=chunk, progress=progress, name='factor_vae', unit=unit)
    return local, labels


def factor_vae_votes(local_variances: np.ndarray, labels: np.ndarray,
                     global_variances: np.ndarray, active: np.ndarray,
                     num_factors: int) -> np.ndarray:
    """Counts (code, factor) votes.

    Args:
      local_variances: ``[n, d]``; labels: int ``[n]`` in [0, num_factors);
      global_variances: ``[d]``; active: bool ``[d]``, at least one True.

    Returns:
      int64 ``[num_factors, d]``: votes[k, j] = how many points with fixed factor k have code j
      as the active code of least normalised variance. Inactive codes get no votes.
    """
    codes = np.flatnonzero(active)
    normalised = local_variances[:, codes] / global_variances[codes]
    winners = codes[np.argmin(normalised, axis=1)]
    votes = np.zeros((num_factors, len(active)), np.int64)
    np.add.at(votes, (labels, winners), 1)
    return votes


def factor_vae_from_votes(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict:
    """The majority-vote classifier from train votes, scored on both sets.

    Args:
      train_votes, eval_votes: int ``[F, d]`` as from `factor_vae_votes`.

    Returns:
      {'train_accuracy', 'eval_accuracy': floats in [0, 1], 'code_to_factor': [d] ints, the
       factor each code predicts}.
    """
    code_to_factor = np.argmax(train_votes, axis=0)  # [d]
    columns = np.arange(train_votes.shape[1])
    return {
        'train_accuracy': float(train_votes[code_to_factor, columns].sum() / train_votes.sum()),
        'eval_accuracy': float(eval_votes[code_to_factor, columns].sum() / eval_votes.sum()),
        'code_to_factor': code_to_factor.tolist(),
    }


def factor_vae(ground_truth: sampling.GroundTruthData, represent: sampling.Represent,
               rng: np.random.Generator, *, batch_size: int = 64, num_train: int = 10_000,
               num_eval: int = 5_000, num_variance_estimate: int = 10_000,
               prune_threshold: float = 0.05, chunk: int = 1024,
               progress: sampling.Progress | None = None) -> dict:
    """The FactorVAE score of `represent` on `ground_truth` (see the module docstring).

    Encodes num_variance_estimate + batch_size x (num_train + num_eval) observations (970k at
    the defaults).

    Returns:
      {'train_accuracy', 'eval_accuracy' (the score), 'num_active_dims', 'global_variances':
       [d], 'code_to_factor': [d], 'num_train', 'num_eval', 'batch_size'}, plus 'note' when no
       code is active (then both accuracies are 0).
    """
    codes, _ = sampling.sample_codes(ground_truth, represent, num_variance_estimate, rng,
                                     chunk=chunk, progress=progress, name='factor_vae',
                                     unit='points for the global variance')
    global_variances = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    sizes = {'num_train': num_train, 'num_eval': num_eval, 'batch_size': batch_size,
             'global_variances': global_variances.tolist()}
    if not active.any():
        return {'train_accuracy': 0.0, 'eval_accuracy': 0.0, 'num_active_dims': 0,
                'note': f'no active code (every global std < {prune_threshold}): score 0',
                **sizes}
    num_factors = len(ground_truth.factor_sizes)
    votes = []
    for num, unit in ((num_train, 'train votes'), (num_eval, 'eval votes')):
        local, labels = factor_vae_points(ground_truth, represent, num, rng,
                                          batch_size=batch_size, chunk=chunk,
                                          progress=progress, unit=unit)
        votes.append(factor_vae_votes(local, labels, global_variances, active, num_factors))
    return {**factor_vae_from_votes(*votes), 'num_active_dims': int(active.sum()), **sizes}
