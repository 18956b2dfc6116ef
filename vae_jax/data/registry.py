"""Builds the train and eval sources a `config.data` names."""

import numpy as np

from vae_jax.errors import UserError

# dSprites has one split; evaluation uses this many examples drawn uniformly from the grid.
DSPRITES_EVAL_EXAMPLES = 10_000


class Subset:
    """The examples `indices` [m] of `source`, re-indexed 0 .. m-1 (a `Source` itself)."""

    def __init__(self, source, indices: np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        self.num_examples = len(self.indices)
        self.example_shape = source.example_shape
        self.num_classes = source.num_classes

    def get_batch(self, indices: np.ndarray) -> dict:
        return self.source.get_batch(self.indices[np.asarray(indices)])


def make_sources(data_config, seed: int):
    """Returns (train_source, eval_source) for `data_config` (see configs.base_config)."""
    from vae_jax.data import dsprites, tfds_source, toy2d  # tfds is slow to import
    name = data_config.name
    if name in tfds_source.KNOWN_DATASETS:
        data_dir = data_config.data_dir or None
        train = tfds_source.TfdsSource(name, data_config.train_split, data_dir)
        if data_config.holdout_class >= 0:  # anomaly detection: train without one class
            if not 0 <= data_config.holdout_class < train.num_classes:
                raise UserError(f'data.holdout_class={data_config.holdout_class} is not a class '
                                f'of {name} (0..{train.num_classes - 1})')
            from vae_jax.evaluate.downstream import ClassSubset
            train = ClassSubset(train, exclude=(data_config.holdout_class,))
        return train, tfds_source.TfdsSource(name, data_config.eval_split, data_dir)
    if name == 'dsprites':
        if data_config.dsprites_source == 'tfds':
            from vae_jax.data.dsprites_tfds import DSpritesTfdsSource
            train = DSpritesTfdsSource(data_config.data_dir or None)
        else:
            train = dsprites.DSpritesSource()
        rng = np.random.default_rng([seed, 2**31 - 1])
        num_eval = min(DSPRITES_EVAL_EXAMPLES, train.num_examples)  # fewer in test stand-ins
        eval_idx = rng.choice(train.num_examples, num_eval, replace=False)
        return train, Subset(train, np.sort(eval_idx))
    if name == 'toy2d':
        n = data_config.toy_examples
        return (toy2d.Toy2DSource(data_config.toy_kind, n, seed=seed),
                toy2d.Toy2DSource(data_config.toy_kind, max(n // 5, 1), seed=seed + 1))
    raise UserError(f'unknown data.name {name!r}')
