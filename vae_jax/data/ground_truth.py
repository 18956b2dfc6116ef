"""Datasets generated from known discrete factors: the interface disentanglement metrics read.

Follows disentanglement_lib's ``GroundTruthData`` (Locatello et al. 2019): a metric draws factor
combinations, asks for the observations they generate, and compares them with the latents.
"""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class GroundTruthData(Protocol):
    """A dataset whose observations are generated from independent discrete factors.

    Attributes:
        factor_names: one name per factor, e.g. dSprites' ``('shape', 'scale', 'orientation',
            'pos_x', 'pos_y')``.
        factor_sizes: number of values of each factor: factor ``f`` takes
            ``range(factor_sizes[f])``.
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    # Optional, not checked by isinstance: ``unique_observations = True`` declares that each
    # factor combination has exactly one observation (`sample_observations_from_factors` then
    # ignores ``rng``), so the metrics encode it once per evaluation (`sampling.memoize`).

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """int ``[num, F]``: factor ``f`` uniform over ``range(factor_sizes[f])``, independently."""
        ...

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         rng: np.random.Generator) -> np.ndarray:
        """int ``[num, F]`` factors -> float32 ``[num, *example_shape]`` observations.

        Pixels follow the convention of the dataset's `Source.get_batch` images ({0, 1} for
        dSprites). ``rng`` draws among the observations of one factor combination, if several.
        """
        ...


def sample_uniform_factors(factor_sizes, num: int, rng: np.random.Generator) -> np.ndarray:
    """int64 ``[num, F]``, column ``f`` uniform over ``range(factor_sizes[f])``, independently."""
    sizes = np.asarray(factor_sizes, np.int64)
    return rng.integers(0, sizes, size=(num, len(sizes)), dtype=np.int64)


def check_factors(factors, factor_sizes) -> np.ndarray:
    """Returns ``factors`` as int64 ``[n, F]``; ValueError unless every column lies in its range."""
    factors = np.asarray(factors)
    sizes = np.asarray(factor_sizes, np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise ValueError(f'factors must have shape [n, {len(sizes)}], got {factors.shape}')
    if factors.size and not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f'factors must be integers, got {factors.dtype}')
    factors = factors.astype(np.int64)
    bad = (factors < 0) | (factors >= sizes)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise ValueError(f'factors {factors[row].tolist()} (row {row}) outside the factor sizes '
                         f'{tuple(sizes.tolist())}')
    return factors


def sample(ground_truth: GroundTruthData, num: int, rng: np.random.Generator):
    """Returns ``(factors int [num, F], observations float32 [num, *example_shape])``."""
    factors = ground_truth.sample_factors(num, rng)
    return factors, ground_truth.sample_observations_from_factors(factors, rng)


def as_ground_truth(source):
    """The `GroundTruthData` behind `source`, or None when it has no factors (MNIST, toy 2-D).

    Wrappers that expose their parent as ``.source`` (`registry.Subset`, which holds the dSprites
    eval split, and `ClassSubset`) are looked through: the ground truth is the parent's whole
    factor grid, not only the examples the wrapper shows.
    """
    while source is not None:
        if isinstance(source, GroundTruthData):
            return source
        source = getattr(source, 'source', None)
    return None


def wants_metrics(config, source) -> bool:
    """Disentanglement metrics are configured and `source` has ground-truth factors."""
    return bool(config.disentanglement.metrics) and as_ground_truth(source) is not None
