"""Sampling ground-truth data and encoding it in bounded chunks; shared by the five metrics.

The metrics follow disentanglement_lib's protocol (Locatello et al. 2019, "Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations"): they see a model
only through `represent`, observations ``[n, ...]`` -> posterior means ``[n, d]``, and a dataset
only through the `GroundTruthData` protocol (`vae_jax.data.ground_truth`).

The BetaVAE and FactorVAE scores need ~10^6 observations at the default sizes, so the work is
vectorised: every factor vector a metric needs is sampled up front (cheap integers), then
observations are rendered and encoded `chunk` at a time and reduced at once to the per-point
feature (e.g. a per-batch variance), so memory is O(chunk + points x d), never O(observations);
where `compute_metrics` memoizes the codes (`memoize`), also O(factor combinations x d).

Randomness is explicit: every function takes a ``np.random.Generator``; `metric_rng` derives one
per (seed, metric name), so a metric's result does not depend on which others are computed.
For a fixed seed the results are deterministic (observation sampling that uses the generator,
e.g. a dataset with nuisance factors, also depends on `chunk`).
"""

import time
from typing import Callable

import numpy as np
from absl import logging

from vae_jax.data.ground_truth import GroundTruthData

Represent = Callable[[np.ndarray], np.ndarray]  # observations [n, ...] -> codes [n, d]
Progress = Callable[[str], None]


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of metric `name` for `seed`: a function of both, not of the other metrics."""
    return np.random.default_rng([seed, *name.encode()])


def sklearn_seed(rng: np.random.Generator) -> int:
    """An int `random_state` for a scikit-learn estimator, drawn from `rng`."""
    return int(rng.integers(2**31 - 1))


def log_progress(line: str) -> None:
    """The default `progress`: an absl INFO log line."""
    logging.info('%s', line)


def encode_groups(ground_truth: GroundTruthData, represent: Represent, factors: np.ndarray,
                  rng: np.random.Generator, reduce: Callable[[np.ndarray], np.ndarray], *,
                  chunk: int = 1024, progress: Progress | None = None, name: str = '',
                  unit: str = 'points') -> np.ndarray:
    """Renders, encodes and reduces groups of observations, at most `chunk` per `represent` call.

    Args:
      represent: observations -> codes; a `Memoized` one (of this `ground_truth`) encodes only
        the combinations it has not seen, and ``rng`` is then unused.
      factors: int ``[n, g, F]``: n groups ("points") of g factor vectors each.
      reduce: codes float64 ``[m, g, d]`` -> ``[m, ...]``: one group's feature, e.g. its
        per-code variance (FactorVAE score) or ``codes[:, 0]`` when g == 1.
      chunk: the most observations rendered and encoded at once; ``chunk // g`` groups (at
        least one) are reduced per step.
      progress: called with a line like ``'mig: 4000/10000 points, 12 s, ETA 18 s'`` at the
        end and every 10% of the groups that comes >= 2 s after the last line; None: silent.

    Returns:
      ``[n, ...]``: ``reduce`` of every group, in order.
    """
    memoized = isinstance(represent, Memoized)
    if memoized and represent.ground_truth is not ground_truth:
        raise ValueError('represent is memoized for another ground truth')
    n, g, num_factors = factors.shape
    per_step = max(1, chunk // g)
    out = []
    start = last_report = time.monotonic()
    next_report = 0.1
    for lo in range(0, n, per_step):
        flat = factors[lo:lo + per_step].reshape(-1, num_factors)
        if memoized:
            codes = represent.codes_of(flat, chunk)
        else:
            codes = _render_and_encode(ground_truth, represent, flat, rng, chunk)
        out.append(reduce(codes.reshape(len(flat) // g, g, codes.shape[-1])))
        done = min(lo + per_step, n)
        now = time.monotonic()
        if progress is not None and (done == n or (done / n >= next_report
                                                   and now - last_report >= 2.0)):
            eta = (now - start) * (n - done) / done
            progress(f'{name}: {done}/{n} {unit}, {now - start:.0f} s, ETA {eta:.0f} s')
            next_report, last_report = np.floor(done / n * 10 + 1) / 10, now
    return np.concatenate(out)


def sample_codes(ground_truth: GroundTruthData, represent: Represent, num: int,
                 rng: np.random.Generator, *, chunk: int = 1024,
                 progress: Progress | None = None, name: str = '',
                 unit: str = 'points') -> tuple[np.ndarray, np.ndarray]:
    """Samples `num` factor vectors and encodes one observation of each.

    Returns:
      (codes float64 ``[num, d]``, factors int64 ``[num, F]``).
    """
    factors = np.asarray(ground_truth.sample_factors(num, rng), np.int64)
    codes = encode_groups(ground_truth, represent, factors[:, None], rng, lambda c: c[:, 0],
                          chunk=chunk, progress=progress, name=name, unit=unit)
    return codes, factors


def _render_and_encode(ground_truth: GroundTruthData, represent: Represent, factors: np.ndarray,
                       rng: np.random.Generator, chunk: int) -> np.ndarray:
    """int ``[n, F]`` -> float64 ``[n, d]``: each row's observation encoded, `chunk` per call."""
    codes = []
    for s in range(0, len(factors), chunk):
        observations = ground_truth.sample_observations_from_factors(factors[s:s + chunk], rng)
        c = np.asarray(represent(observations), np.float64)
        if c.ndim != 2 or len(c) != len(observations):
            raise ValueError(f'represent returned shape {c.shape} for {len(observations)} '
                             'observations; expected [n, d]')
        codes.append(c)
    return np.concatenate(codes)


# The most memory `Memoized` gives its table of codes (float64, a row per factor combination):
# beyond it, it encodes every draw.
MEMO_MAX_BYTES = 1 << 30


class Memoized:
    """`represent` that encodes each factor combination of `ground_truth` at most once.

    For a ground truth with one observation per factor combination (``unique_observations``),
    the code of a combination is a function of the combination: the metrics' draws repeat
    combinations (disentanglement_lib's sample sizes draw ~2.9M observations from dSprites'
    737,280), and `encode_groups` reads those codes back instead of rendering and encoding the
    observation again. Codes are kept as float64 ``[combinations, d]``, a row per combination
    of the grid (59 MB for dSprites at d = 10); a table over `MEMO_MAX_BYTES` is not kept, and
    every draw is encoded.

    Called with observations it is `represent` itself. The codes are the same as without it
    when `represent` is deterministic (a posterior mean, not a sample: a sampling `represent`
    would give every repeat the same sample) and encodes an observation the same whichever
    others share its call (checked bit for bit for the conv encoder of
    `factor_report.representation_function` in tests/test_disentanglement.py).
    """

    def __init__(self, ground_truth: GroundTruthData, represent: Represent):
        self.ground_truth, self.represent = ground_truth, represent
        self.sizes = tuple(int(s) for s in ground_truth.factor_sizes)
        self.known = np.zeros(int(np.prod(self.sizes)), bool)
        self.table: np.ndarray | None = None  # float64 [combinations, d], at the first codes
        self.too_large = False  # the table would exceed MEMO_MAX_BYTES: encode every draw
        self.requested = self.encoded = 0

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return self.represent(observations)

    def codes_of(self, factors: np.ndarray, chunk: int) -> np.ndarray:
        """int ``[n, F]`` -> float64 ``[n, d]``; encodes the combinations not seen before,
        `chunk` per `represent` call, in the order of the grid."""
        self.requested += len(factors)
        if self.too_large:
            self.encoded += len(factors)
            return _render_and_encode(self.ground_truth, self.represent, factors, None, chunk)
        index = np.ravel_multi_index(tuple(np.asarray(factors, np.int64).T), self.sizes)
        unseen = ~self.known[index]
        new, first = np.unique(index[unseen], return_index=True)  # new: sorted, distinct
        self.encoded += len(new)
        if not len(new):
            return self.table[index]
        codes = _render_and_encode(self.ground_truth, self.represent, factors[unseen][first],
                                   None, chunk)
        if self.table is None:  # the first call: every row is unseen
            if len(self.known) * codes.shape[1] * 8 > MEMO_MAX_BYTES:
                self.too_large = True
                return codes[np.searchsorted(new, index)]
            self.table = np.empty((len(self.known), codes.shape[1]), np.float64)
        self.table[new] = codes
        self.known[new] = True
        return self.table[index]


def memoize(ground_truth: GroundTruthData, represent: Represent) -> Represent:
    """`Memoized(ground_truth, represent)` where the ground truth declares
    ``unique_observations`` and a table of one code per combination could fit in
    `MEMO_MAX_BYTES`, else `represent` unchanged."""
    combinations = np.prod(ground_truth.factor_sizes, dtype=np.float64)
    if getattr(ground_truth, 'unique_observations', False) and combinations * 8 <= MEMO_MAX_BYTES:
        return Memoized(ground_truth, represent)
    return represent
