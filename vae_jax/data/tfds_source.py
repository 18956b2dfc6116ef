"""Image datasets read from a prepared TFDS ``data_dir`` (array_record), cached as uint8 in memory."""

import logging
import os
import threading

import numpy as np

from vae_jax.errors import UserError

# name -> divisor that maps the stored uint8 pixels into [0, 1]. binarized_mnist stores {0, 1}.
_PIXEL_MAX = {'mnist': 255.0, 'fashion_mnist': 255.0, 'binarized_mnist': 1.0}
KNOWN_DATASETS = tuple(_PIXEL_MAX)


def resolve_data_dir(data_dir=None):
    """The TFDS data_dir to read: the argument, else ``$TFDS_DATA_DIR``, else TFDS's default."""
    if data_dir:
        return os.path.expanduser(str(data_dir))
    if os.environ.get('TFDS_DATA_DIR'):
        return os.path.expanduser(os.environ['TFDS_DATA_DIR'])
    return os.path.join(os.path.expanduser('~'), 'tensorflow_datasets')


def _how_to_prepare(name, data_dir):
    return (
        f'To prepare it, run `tfds build {name} --data_dir={data_dir} '
        f'--file_format=array_record` where there is internet (needs tensorflow), or point '
        f'--config.data.data_dir (or TFDS_DATA_DIR) at a directory that holds a prepared {name}.'
    )


class _DropTfdsNoise(logging.Filter):
    """Drops two absl warnings TFDS logs on every run: that PIL (not OpenCV) decodes PNGs, and
    that a missing dataset's folder lacks dataset_info.json (our UserError explains that)."""

    def filter(self, record):
        message = record.getMessage()
        return not message.startswith(('OpenCV is not installed', 'Variant folder'))


_NOISE_FILTER = _DropTfdsNoise()


def _open(name, split, data_dir):
    """Returns ``(builder, data_source)``, turning every "not there" case into one UserError.

    ``tfds.data_source`` itself would try to download, and with ``download=False`` on a missing
    dataset it raises a misleading "FileFormat.TFRECORD is not supported" error, so the builder
    is checked first.
    """
    import tensorflow_datasets as tfds  # Slow to import; only needed for these datasets.

    logging.getLogger('absl').addFilter(_NOISE_FILTER)  # A no-op when already added.

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise UserError(
            f'Dataset {name!r} (version {builder.version}) is not prepared in data_dir '
            f'{data_dir!r} (looked for {builder.data_dir}). ' + _how_to_prepare(name, data_dir)
        )
    file_format = getattr(builder.info.file_format, 'value', builder.info.file_format)
    if file_format not in ('array_record', 'parquet'):
        raise UserError(
            f'Dataset {name!r} in {builder.data_dir} is stored as {file_format}, which has no '
            f'random access. Rebuild it into another data_dir with --file_format=array_record. '
            + _how_to_prepare(name, data_dir)
        )
    try:
        source = builder.as_data_source(split=split)
    except ValueError as e:  # Unknown split or bad slice, e.g. 'valid' or 'train[:200%]'.
        raise UserError(
            f'Bad split {split!r} for dataset {name!r} in {data_dir!r}: {e} '
            f'Available splits: {sorted(builder.info.splits)}.'
        ) from None
    return builder, source


_CACHES: dict = {}
_CACHES_LOCK = threading.Lock()


def _shared_cache(name, split, data_dir, num_examples, example_shape):
    """(images uint8 [n, ...], labels int32 [n], filled bool [n], lock) of one split, shared.

    The lock is held while examples are decoded into the arrays: the prefetch thread and the
    main thread (eval) may read the same split.
    """
    key = (name, split, data_dir)
    with _CACHES_LOCK:
        if key not in _CACHES:
            _CACHES[key] = (np.zeros((num_examples, *example_shape), np.uint8),
                            np.zeros((num_examples,), np.int32),
                            np.zeros((num_examples,), bool), threading.Lock())
        return _CACHES[key]


class TfdsSource:
    """A TFDS image split as a `Source`, decoding each example once and caching it.

    PNG decoding through TFDS costs ~70-150 us per example; the decoded uint8 pixels are kept
    in a preallocated array (60000 MNIST images are 47 MB), so after the first epoch a batch is
    a numpy gather. binarized_mnist has no labels: its labels are 0 and ``num_classes`` is 0.

    Args:
        name: one of ``KNOWN_DATASETS``.
        split: a TFDS split spec, e.g. ``'train'``, ``'test'``, ``'train[:1000]'``.
        data_dir: a TFDS data_dir holding the dataset prepared as array_record; None means
            ``$TFDS_DATA_DIR`` or TFDS's default ``~/tensorflow_datasets``. Never downloads.
    """

    def __init__(self, name, split, data_dir=None):
        if name not in _PIXEL_MAX:
            raise UserError(f'Unknown TFDS dataset {name!r}; known: {", ".join(KNOWN_DATASETS)}.')
        self.name = name
        self.split = split
        self.data_dir = resolve_data_dir(data_dir)
        builder, self._source = _open(name, split, self.data_dir)
        features = builder.info.features
        self.num_examples = len(self._source)
        self.example_shape = tuple(features['image'].shape)
        self.num_classes = features['label'].num_classes if 'label' in features else 0
        self._has_labels = 'label' in features
        self._pixel_max = np.float32(_PIXEL_MAX[name])
        # Every source of the same split shares one decoded cache (the runs of a sweep, a run
        # and its evaluation), so each example is decoded once per process.
        self._images, self._labels, self._filled, self._lock = _shared_cache(
            name, split, str(self.data_dir), self.num_examples, self.example_shape)

    def __repr__(self):
        return f'TfdsSource({self.name!r}, {self.split!r}, data_dir={self.data_dir!r})'

    @property
    def num_cached(self):
        """How many examples have been decoded so far."""
        return int(self._filled.sum())

    def _fill(self, indices):
        """Decodes the not-yet-cached examples among ``indices`` (int [n])."""
        with self._lock:
            missing = np.unique(indices[~self._filled[indices]])
            if missing.size == 0:
                return
            examples = self._source.__getitems__(missing.tolist())
            self._images[missing] = np.stack([ex['image'] for ex in examples])
            if self._has_labels:
                self._labels[missing] = [ex['label'] for ex in examples]
            self._filled[missing] = True  # Last, so a reader never sees a half-written example.

    def get_batch(self, indices):
        """``indices`` int [n] -> ``{'image': float32 [n, 28, 28, 1] in [0, 1], 'label': int32 [n]}``."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f'indices outside [0, {self.num_examples}) for {self!r}')
        if not self._filled[indices].all():
            self._fill(indices)
        return {
            'image': self._images[indices].astype(np.float32) / self._pixel_max,
            'label': self._labels[indices],
        }
