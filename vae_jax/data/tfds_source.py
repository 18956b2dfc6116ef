"""Image datasets read from a prepared TFDS ``data_dir`` (array_record), decoded once per machine.

The first batch of a split decodes the whole split (its PNGs, ~40 us an image) into uint8 arrays
and saves them as ``.npy`` files in ``<cache>/decoded/`` (``<cache>`` is ``$VAE_JAX_CACHE``, else
``~/.cache/vae_jax``); later processes memory-map those files instead of decoding (~0.01 s).
An entry is keyed by dataset, TFDS version, split spec, `CACHE_FORMAT` and the paths, sizes and
mtimes of the prepared dataset's files, so a rebuilt or touched dataset is decoded again. A
damaged entry is decoded and rewritten; an unwritable cache folder only costs the decoding.
``VAE_JAX_DATA_CACHE=0`` turns the files off: each process then decodes the splits it reads.
"""

import hashlib
import io
import json
import os
import re
import threading
import time

import numpy as np
from absl import logging

from vae_jax import cache
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


class _DropTfdsNoise:
    """Drops two absl warnings TFDS logs on every run: that PIL (not OpenCV) decodes PNGs, and
    that a missing dataset's folder lacks dataset_info.json (our UserError explains that)."""

    def filter(self, record):
        message = record.getMessage()
        return not message.startswith(('OpenCV is not installed', 'Variant folder'))


_NOISE_FILTER = _DropTfdsNoise()


def _open(name, split, data_dir, raw=False):
    """Returns ``(builder, data_source)``, turning every "not there" case into one UserError.

    ``raw=True`` gives a data source of the serialized records (bytes), not decoded examples.

    ``tfds.data_source`` itself would try to download, and with ``download=False`` on a missing
    dataset it raises a misleading "FileFormat.TFRECORD is not supported" error, so the builder
    is checked first.
    """
    import tensorflow_datasets as tfds  # Slow to import; only needed for these datasets.

    logging.get_absl_logger().addFilter(_NOISE_FILTER)  # A no-op when already added.

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
        method = tfds.decode.DeserializeMethod
        source = builder.as_data_source(
            split=split,
            deserialize_method=method.RAW_BYTES if raw else method.DESERIALIZE_AND_DECODE)
    except ValueError as e:  # Unknown split or bad slice, e.g. 'valid' or 'train[:200%]'.
        raise UserError(
            f'Bad split {split!r} for dataset {name!r} in {data_dir!r}: {e} '
            f'Available splits: {sorted(builder.info.splits)}.'
        ) from None
    return builder, source


def persistent_cache_enabled():
    """Whether decoded splits are kept on disk: unless ``$VAE_JAX_DATA_CACHE`` is 0 (or off)."""
    return os.environ.get('VAE_JAX_DATA_CACHE', '1').strip().lower() not in ('0', 'false', 'off')


# Part of every cache key: bump it when what is cached changes, and older entries are ignored.
CACHE_FORMAT = 1
_DECODE_CHUNK = 4096  # records read from the array_record files at a time


def _fingerprint(folder):
    """``[(path, size, mtime_ns)]`` of the prepared dataset's files (array_record shards and
    metadata), sorted: rebuilding, replacing or touching any of them changes the cache key."""
    folder = os.path.realpath(os.fspath(folder))
    with os.scandir(folder) as entries:
        stats = [(entry.path, entry.stat()) for entry in entries if entry.is_file()]
    return sorted((path, st.st_size, st.st_mtime_ns) for path, st in stats)


def _cache_key(name, version, split, fingerprint):
    """A file-name-safe key, readable in front (``mnist-3.0.1-train_1000-<hash>``)."""
    blob = json.dumps([CACHE_FORMAT, name, str(version), split, fingerprint])
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    readable = re.sub(r'[^A-Za-z0-9_.-]+', '_', split).strip('_')[:48]
    return f'{name}-{version}-{readable}-{digest}'


def _decode_all(records, example_shape, has_labels):
    """Every record of a split -> ``(images uint8 [n, *example_shape], labels int32 [n])``.

    The ``tf.train.Example`` records are parsed here and their PNGs decoded by PIL directly:
    the pixels TFDS's own decoding gives (tests/test_data_cache.py checks it bit for bit) at
    ~40 us an image instead of ~75-110 us. Serial on purpose, as measured on 2 cores: most of
    the work holds the GIL, so 2 threads were no faster (0.88 vs 0.82 s for 10000 images), and
    2 spawned worker processes were slower (1.8-2.2 vs 0.7-0.8 s for 20000) for their start-up.
    Labels are 0 for a dataset without them.
    """
    from PIL import Image
    from tensorflow_datasets.proto import tf_example_pb2  # TFDS's own (TF-free) proto.

    n = len(records)
    images = np.empty((n, *example_shape), np.uint8)
    labels = np.zeros((n,), np.int32)
    for start in range(0, n, _DECODE_CHUNK):
        chunk = records.__getitems__(list(range(start, min(start + _DECODE_CHUNK, n))))
        for i, record in enumerate(chunk, start):
            feature = tf_example_pb2.Example.FromString(record).features.feature
            with Image.open(io.BytesIO(feature['image'].bytes_list.value[0])) as png:
                images[i] = np.asarray(png, np.uint8).reshape(example_shape)
            if has_labels:
                labels[i] = feature['label'].int64_list.value[0]
    return images, labels


class _Split:
    """One split's decoded arrays, shared by every source of it in the process (the runs of a
    sweep, a run and its evaluation). ``lock`` is held while they load: the prefetch thread and
    the main thread (eval) may ask for the same split."""

    def __init__(self):
        self.lock = threading.Lock()
        self.images = None  # uint8 [n, *example_shape]; set last, once the split is loaded
        self.labels = None  # int32 [n]
        self.from_cache = None
        self.load_seconds = None


_SPLITS: dict = {}  # cache key -> _Split
_SPLITS_LOCK = threading.Lock()


class TfdsSource:
    """A TFDS image split as a `Source`, decoded once per machine (see the module docstring).

    The first batch loads the whole split as uint8 (60000 MNIST images are 47 MB), from the
    cache folder or by decoding it; from then on a batch is a numpy gather. binarized_mnist has
    no labels: its labels are 0 and ``num_classes`` is 0.

    Args:
        name: one of ``KNOWN_DATASETS``.
        split: a TFDS split spec, e.g. ``'train'``, ``'test'``, ``'train[:1000]'``.
        data_dir: a TFDS data_dir holding the dataset prepared as array_record; None means
            ``$TFDS_DATA_DIR`` or TFDS's default ``~/tensorflow_datasets``. Never downloads.

    After the split has loaded, ``from_cache`` says whether it was read from the cache folder
    and ``load_seconds`` how long loading took (both None before).
    """

    def __init__(self, name, split, data_dir=None):
        if name not in _PIXEL_MAX:
            raise UserError(f'Unknown TFDS dataset {name!r}; known: {", ".join(KNOWN_DATASETS)}.')
        self.name = name
        self.split = split
        self.data_dir = resolve_data_dir(data_dir)
        builder, self._records = _open(name, split, self.data_dir, raw=True)
        features = builder.info.features
        self.num_examples = len(self._records)
        self.example_shape = tuple(features['image'].shape)
        self.num_classes = features['label'].num_classes if 'label' in features else 0
        self._has_labels = 'label' in features
        self._pixel_max = np.float32(_PIXEL_MAX[name])
        self.cache_key = _cache_key(name, builder.version, split, _fingerprint(builder.data_dir))
        with _SPLITS_LOCK:
            self._split = _SPLITS.setdefault(self.cache_key, _Split())

    def __repr__(self):
        return f'TfdsSource({self.name!r}, {self.split!r}, data_dir={self.data_dir!r})'

    @property
    def num_cached(self):
        """How many examples are decoded: 0 before the first batch, then all of them."""
        return 0 if self._split.images is None else self.num_examples

    @property
    def from_cache(self):
        """Whether the split was read from the cache folder (None before it loads)."""
        return self._split.from_cache

    @property
    def load_seconds(self):
        """How long loading the split took, decoding or reading the cache (None before)."""
        return self._split.load_seconds

    def load(self):
        """Loads the whole split now, if it is not loaded yet; returns ``self``."""
        split = self._split
        if split.images is None:
            with split.lock:
                if split.images is None:
                    self._load_into(split)
        return self

    def _load_into(self, split):
        start = time.perf_counter()
        n = self.num_examples
        spec = {'images': ((n, *self.example_shape), np.uint8), 'labels': ((n,), np.int32)}
        stem = None
        if persistent_cache_enabled() and n:  # numpy cannot memory-map an empty array
            stem = cache.cache_dir() / 'decoded' / self.cache_key
        arrays = cache.load_arrays(stem, spec) if stem else None
        from_cache = arrays is not None
        if from_cache:
            where = f'{stem}.*.npy'
        else:
            images, labels = _decode_all(self._records, self.example_shape, self._has_labels)
            arrays = {'images': images, 'labels': labels}
            if stem is None:
                where = 'not cached: VAE_JAX_DATA_CACHE=0' if n else 'empty split'
            elif cache.save_arrays(stem, arrays):
                where = f'cached to {stem}.*.npy'
            else:
                where = 'not cached: the cache folder is not writable'
        split.from_cache = from_cache
        split.load_seconds = time.perf_counter() - start
        split.labels = arrays['labels']
        split.images = arrays['images']  # Last: `load` reads it without the lock.
        logging.info('%s %s: %d images %s in %.2f s (%s)', self.name, self.split, n,
                     'read from cache' if from_cache else 'decoded', split.load_seconds, where)

    def get_batch(self, indices):
        """``indices`` int [n] -> ``{'image': float32 [n, 28, 28, 1] in [0, 1], 'label': int32 [n]}``."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f'indices outside [0, {self.num_examples}) for {self!r}')
        self.load()
        return {
            'image': self._split.images[indices].astype(np.float32) / self._pixel_max,
            'label': self._split.labels[indices],
        }
