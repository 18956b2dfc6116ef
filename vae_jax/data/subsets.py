"""Sources that show part of another source: by index (`Subset`) or by label (`ClassSubset`),
`BinarizedSource`, a split as a dynamically binarized run is evaluated on, `MissingPixels`, a
split whose images lack a fixed random part of their pixels, and `PerturbedPixels`, one whose
images have a fixed random part of their pixels replaced by noise.

All expose their parent as `.source`, through which `ground_truth.as_ground_truth` finds the
factors of a dSprites subset.
"""

import jax
import numpy as np

from vae_jax import keys


class Subset:
    """The examples `indices` [m] of `source`, re-indexed 0 .. m-1 (a `Source` itself)."""

    def __init__(self, source, indices: np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.num_examples = len(self.indices)
        self.example_shape = source.example_shape
        self.num_classes = source.num_classes

    def __repr__(self):
        return f'Subset({self.source!r}, {self.num_examples} examples)'

    def get_batch(self, indices: np.ndarray) -> dict:
        return self.source.get_batch(self.indices[np.asarray(indices)])


class ClassSubset:
    """The examples of a labelled `Source` whose label is not in `exclude`, as a `Source`.

    A run with `data.holdout_class=c` trains on `ClassSubset(train, exclude=(c,))` and is
    evaluated on `ClassSubset(test, exclude=(c,))` and, apart, `ClassSubset(test, only=(c,))`.
    Labels keep their values and `num_classes` is the parent's. Reading the labels reads every example once
    (a TfdsSource caches them; procedural sources render them).
    """

    def __init__(self, source, exclude=(), chunk: int = 10000, *, only=None):
        """`only`: keep just these classes instead (the held-out class's test examples)."""
        self.source = source
        self.exclude = tuple(int(c) for c in exclude)
        self.only = None if only is None else tuple(int(c) for c in only)
        labels = np.concatenate([
            source.get_batch(np.arange(i, min(i + chunk, source.num_examples)))['label']
            for i in range(0, source.num_examples, chunk)])
        keep = (np.isin(labels, self.only) if self.only is not None
                else ~np.isin(labels, self.exclude))
        self.indices = np.flatnonzero(keep)  # [num_examples]
        self.num_examples = len(self.indices)
        self.example_shape = tuple(source.example_shape)
        self.num_classes = source.num_classes

    def __repr__(self):
        which = f'only={self.only}' if self.only is not None else f'exclude={self.exclude}'
        return f'ClassSubset({self.source!r}, {which})'

    def get_batch(self, indices):
        """int [k] indices into the subset -> the parent's batch dict for those examples."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f'indices outside [0, {self.num_examples}) for {self!r}')
        return self.source.get_batch(self.indices[indices])


class BinarizedSource:
    """`source` with each image replaced by the fixed binary draw pixels ~ Bernoulli(intensity)
    that a run with data.binarize='dynamic' is evaluated on.

    Example i is drawn with `keys.binarize_keys(keys.example_keys(key, i))`: with the run's
    eval key these are exactly the binary images `steps.eval_step` and the IWAE bound see for
    the same split, so every evaluation (active units, KL per dimension, probe, anomaly scores)
    reads the inputs the model was trained on, and reads the same ones.
    """

    def __init__(self, source, key):
        self.source, self.key = source, key
        self.num_examples = source.num_examples
        self.example_shape = tuple(source.example_shape)
        self.num_classes = source.num_classes

    def __repr__(self):
        return f'BinarizedSource({self.source!r})'

    def get_batch(self, indices) -> dict:
        indices = np.asarray(indices, np.int64)
        batch = dict(self.source.get_batch(indices))
        batch['image'] = np.asarray(_binarize(self.key, np.asarray(batch['image'], np.float32),
                                              indices.astype(np.int32)))
        return batch


@jax.jit
def _binarize(key, images, indices):
    return keys.binarize(keys.example_keys(key, indices), images)


class _PerPixel:
    """A source whose images a fixed per-example draw changes, pixel by pixel, at `rate`."""

    def __init__(self, source, rate: float):
        self.source, self.rate = source, float(rate)
        self.num_examples = source.num_examples
        self.example_shape = tuple(source.example_shape)
        self.num_classes = source.num_classes

    def __repr__(self):
        return f'{type(self).__name__}({self.source!r}, rate={self.rate})'


class MissingPixels(_PerPixel):
    """`source` with each image missing a fixed random fraction `rate` of its pixels (NaN):
    data missing completely at random, as in Mattei & Frellsen 2019's MIWAE experiments.

    Example i lacks the pixels drawn by numpy's default_rng([keys.MISSING_PIXELS, i]), each
    missing with probability `rate` (all channels of a pixel together): the same pixels in
    every epoch, run and seed, so the model never sees them. Only objectives that read NaN as
    "missing" train on it (`Objective.missing_data`).
    """

    def observed(self, indices) -> np.ndarray:
        """bool [n, *example_shape]: True where example indices[n] has its pixel."""
        h, w = self.example_shape[:2]
        seen = np.stack([np.random.default_rng([keys.MISSING_PIXELS, int(i)]).random((h, w))
                         >= self.rate for i in np.asarray(indices, np.int64)])
        return np.broadcast_to(seen.reshape(seen.shape + (1,) * (len(self.example_shape) - 2)),
                               (len(seen), *self.example_shape))

    def get_batch(self, indices) -> dict:
        batch = dict(self.source.get_batch(indices))
        batch['image'] = np.where(self.observed(indices), batch['image'], np.nan).astype(
            np.float32)
        return batch


class PerturbedPixels(_PerPixel):
    """`source` with each pixel replaced, with probability `rate`, by a uniform random value
    (a random bit when the source's images are binary): the training data of the background
    model of Ren et al. 2019's likelihood ratio, which learns the population's low-level
    statistics but not its semantics. Example i's noise comes from default_rng(
    [keys.PERTURBED_PIXELS, i]) and is fixed (Ren et al. redraw it every time; a fixed draw
    keeps the source a pure function of the index, as every `Source`).
    """

    def get_batch(self, indices) -> dict:
        batch = dict(self.source.get_batch(indices))
        images = np.asarray(batch['image'], np.float32)
        binary = bool(np.isin(images, (0.0, 1.0)).all())
        out = np.empty_like(images)
        for n, i in enumerate(np.asarray(indices, np.int64)):
            rng = np.random.default_rng([keys.PERTURBED_PIXELS, int(i)])
            replace = rng.random(self.example_shape) < self.rate
            noise = rng.random(self.example_shape)
            noise = (noise < 0.5).astype(np.float32) if binary else noise.astype(np.float32)
            out[n] = np.where(replace, noise, images[n])
        batch['image'] = out
        return batch
