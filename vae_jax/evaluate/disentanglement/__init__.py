"""Disentanglement metrics with disentanglement_lib's protocol (Locatello et al. 2019).

Reimplemented from the papers and the protocol (disentanglement_lib is TF1 and unmaintained):
BetaVAE score, FactorVAE score, MIG, DCI and SAP of a representation (the posterior mean) on a
dataset of discrete ground-truth factors. Defaults are disentanglement_lib's. The classifiers
are scikit-learn's (well-maintained, already a project dependency, and the estimators
disentanglement_lib used, so scores are comparable); each module says where it departs.

    results = compute_metrics(ground_truth, represent)
    results['mig']['mig'], results['dci']['disentanglement'], ...

`ground_truth` follows `GroundTruthData`; `represent` maps observations ``[n, ...]`` to codes
``[n, d]`` (e.g. a jitted encoder's mean) and is called on at most `chunk` observations at once.
Where the ground truth has one observation per factor combination (``unique_observations``,
dSprites), `compute_metrics` encodes each combination once and reads repeats back
(`sampling.memoize`): the same codes, fewer encoder calls.

Cost at the defaults on procedural dSprites: see the README, "Disentanglement" (measured by
`python benchmarks/disentanglement_metrics.py` on a quiet 2-core CPU, a random projection of the
pixels standing in for the encoder, so mostly rendering and fitting). A real encoder adds its
own time for the observations: ~2.9M drawn (BetaVAE and FactorVAE draw 97% of them), 723k of
them distinct on dSprites, which the memo encodes.

The functions share the names of their modules (``mig`` in ``mig.py``); this package's
attributes are the functions, and every array-level function is re-exported here.
"""

import time

from vae_jax.evaluate.disentanglement import sampling
from vae_jax.evaluate.disentanglement.beta_vae import (beta_vae, beta_vae_from_features,
                                                       beta_vae_points)
from vae_jax.evaluate.disentanglement.dci import (dci, dci_from_codes, dci_from_importance,
                                                  fit_order, importance_matrix)
from vae_jax.evaluate.disentanglement.factor_vae import (factor_vae, factor_vae_from_votes,
                                                         factor_vae_points, factor_vae_votes)
from vae_jax.evaluate.disentanglement.mig import (discrete_entropy, discrete_mutual_info,
                                                  discretize, mig, mig_from_codes)
from vae_jax.evaluate.disentanglement.sampling import GroundTruthData, metric_rng
from vae_jax.evaluate.disentanglement.sap import (sap, sap_from_codes, sap_from_score_matrix,
                                                  sap_score_matrix)

METRIC_NAMES = ('beta_vae', 'factor_vae', 'mig', 'dci', 'sap')

__all__ = [
    'GroundTruthData', 'METRIC_NAMES', 'compute_metrics', 'metric_rng',
    'beta_vae', 'beta_vae_from_features', 'beta_vae_points',
    'factor_vae', 'factor_vae_from_votes', 'factor_vae_points', 'factor_vae_votes',
    'mig', 'mig_from_codes', 'discretize', 'discrete_mutual_info', 'discrete_entropy',
    'dci', 'dci_from_codes', 'dci_from_importance', 'fit_order', 'importance_matrix',
    'sap', 'sap_from_codes', 'sap_from_score_matrix', 'sap_score_matrix',
]


def compute_metrics(ground_truth: GroundTruthData, represent: sampling.Represent,
                    names=METRIC_NAMES, *, seed: int = 0, num_train: int = 10_000,
                    num_test: int = 5_000, batch_size: int = 64,
                    num_variance_estimate: int = 10_000, num_bins: int = 20,
                    progress: sampling.Progress | None = None, chunk: int = 1024,
                    dci_model: str = 'gbt', n_jobs: int = 1,
                    memoize: bool = True) -> dict[str, dict]:
    """Computes the named metrics; each draws from its own `metric_rng(seed, name)`.

    Args:
      names: a subset of `METRIC_NAMES`, computed in the given order.
      num_train: training points of every metric (BetaVAE/FactorVAE: points/votes, each of
        batch_size observations; MIG, DCI, SAP: observations).
      num_test: evaluation points (BetaVAE/FactorVAE num_eval; DCI, SAP num_test; MIG has none).
      batch_size: observations per BetaVAE / FactorVAE point.
      num_variance_estimate: observations for FactorVAE's global variances.
      num_bins: MIG's histogram bins per code.
      progress: called with human-readable progress lines; None logs them with absl INFO.
      chunk: the most observations per `represent` call.
      dci_model: 'gbt' (the protocol) or 'random_forest' (faster, not comparable).
      n_jobs: DCI factors fitted in parallel.
      memoize: encode each factor combination once for all the metrics, where the ground truth
        has one observation per combination (`sampling.memoize`; `represent` must then be
        deterministic); False encodes every draw. With it a metric's ``wall_time_s`` depends
        on the metrics before it, which filled the memo.

    Returns:
      {name: that metric's dict (python floats, ints and lists: JSON-serialisable) with
       'wall_time_s' added}. The headline numbers: beta_vae/factor_vae 'eval_accuracy',
       mig 'mig', dci 'disentanglement'/'completeness'/'informativeness_test', sap 'sap'.
    """
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f'unknown metrics {unknown}; expected a subset of {METRIC_NAMES}')
    progress = sampling.log_progress if progress is None else progress
    common = {'chunk': chunk, 'progress': progress}
    if memoize:  # one memo shared by the metrics below
        represent = sampling.memoize(ground_truth, represent)
    calls = {
        'beta_vae': lambda rng: beta_vae(ground_truth, represent, rng, batch_size=batch_size,
                                         num_train=num_train, num_eval=num_test, **common),
        'factor_vae': lambda rng: factor_vae(ground_truth, represent, rng, batch_size=batch_size,
                                             num_train=num_train, num_eval=num_test,
                                             num_variance_estimate=num_variance_estimate,
                                             **common),
        'mig': lambda rng: mig(ground_truth, represent, rng, num_train=num_train,
                               num_bins=num_bins, **common),
        'dci': lambda rng: dci(ground_truth, represent, rng, num_train=num_train,
                               num_test=num_test, model=dci_model, n_jobs=n_jobs, **common),
        'sap': lambda rng: sap(ground_truth, represent, rng, num_train=num_train,
                               num_test=num_test, **common),
    }
    results = {}
    for name in names:
        start = time.monotonic()
        result = calls[name](metric_rng(seed, name))
        results[name] = {**result, 'wall_time_s': time.monotonic() - start}
        progress(f'{name}: done in {results[name]["wall_time_s"]:.1f} s')
    if isinstance(represent, sampling.Memoized) and represent.requested:
        progress(f'encoded {represent.encoded:,} distinct observations for the '
                 f'{represent.requested:,} the metrics drew')
    return results

