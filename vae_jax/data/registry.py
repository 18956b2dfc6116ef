"""Builds the train and eval sources a `config.data` names.

Every eval source holds examples the run never trains on:
- MNIST-like datasets: the test split (`data.eval_split`). With `data.holdout_class=c` the
  class is removed from training, and the eval split is reported in two parts: the other
  classes ('eval') and class c alone ('eval_heldout').
- dSprites has a single split: a fixed set of `DSPRITES_HOLDOUT_EXAMPLES` factor combinations
  (the same for every seed and run, `keys.DSPRITES_HOLDOUT`) is removed from training and is
  the eval set. Disentanglement metrics still sample the whole factor grid, as in
  disentanglement_lib.
- toy2d: an independent draw of the same distribution.
"""

import numpy as np

from vae_jax import keys
from vae_jax.data.subsets import ClassSubset, MissingPixels, PerturbedPixels, Subset
from vae_jax.errors import UserError

# dSprites combinations held out of training for evaluation (of 737,280).
DSPRITES_HOLDOUT_EXAMPLES = 10_000


def dsprites_holdout(num_examples: int) -> np.ndarray:
    """The indices [m] of the held-out dSprites combinations: 10,000 of them, or a tenth of a
    smaller stand-in; a function of `num_examples` only. In random order, not sorted: the grid
    is ordered by factor, so a sorted prefix (an eval of `eval_examples` < m) would be almost
    all squares; any prefix of this order is a uniform sample."""
    num_eval = min(DSPRITES_HOLDOUT_EXAMPLES, num_examples // 10)
    return keys.dsprites_holdout_rng().choice(num_examples, num_eval, replace=False)


def make_sources(data_config, seed: int):
    """Returns (train_source, eval_source) for `data_config` (see configs.base_config)."""
    return _make(data_config, seed)[:2]


def train_and_evals(data_config, seed: int):
    """(train source, {'eval': the eval source, 'eval_heldout': the held-out class's test
    examples (only with data.holdout_class)}): what training reads and what the periodic eval
    reports, one metric prefix each."""
    train, evaluation, heldout = _make(data_config, seed)
    return train, {'eval': evaluation} | ({'eval_heldout': heldout} if heldout is not None else {})


def _make(data_config, seed: int):
    """(train, eval, held-out class or None); with data.train_perturb the training images have
    that fraction of their pixels replaced by noise (`PerturbedPixels`), with
    data.train_missing they lack that fraction (`MissingPixels`); the eval splits are intact."""
    train, evaluation, heldout = _sources(data_config, seed)
    if data_config.get('train_perturb', 0.0) > 0:
        train = PerturbedPixels(train, data_config.train_perturb)
    if data_config.get('train_missing', 0.0) > 0:
        train = MissingPixels(train, data_config.train_missing)
    return train, evaluation, heldout


def _sources(data_config, seed: int):
    from vae_jax.data import dsprites, tfds_source, toy2d  # tfds is slow to import
    name = data_config.name
    if name in tfds_source.KNOWN_DATASETS:
        data_dir = data_config.data_dir or None
        train = tfds_source.TfdsSource(name, data_config.train_split, data_dir)
        test = tfds_source.TfdsSource(name, data_config.eval_split, data_dir)
        c = data_config.holdout_class
        if c < 0:
            return train, test, None
        if not 0 <= c < train.num_classes:
            raise UserError(f'data.holdout_class={c} is not a class of {name} '
                            f'(0..{train.num_classes - 1})')
        return (ClassSubset(train, exclude=(c,)), ClassSubset(test, exclude=(c,)),
                ClassSubset(test, only=(c,)))
    if name == 'dsprites':
        if data_config.dsprites_source == 'tfds':
            from vae_jax.data.dsprites_tfds import DSpritesTfdsSource
            full = DSpritesTfdsSource(data_config.data_dir or None)
        else:
            full = dsprites.DSpritesSource()
        held = dsprites_holdout(full.num_examples)
        return (Subset(full, np.setdiff1d(np.arange(full.num_examples), held)),
                Subset(full, held), None)
    if name == 'toy2d':
        n = data_config.toy_examples
        return (toy2d.Toy2DSource(data_config.toy_kind, n, seed=seed),
                toy2d.Toy2DSource(data_config.toy_kind, max(n // 5, 1), seed=seed + 1), None)
    raise UserError(f'unknown data.name {name!r}')
