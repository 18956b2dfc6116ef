"""The real dSprites (Matthey et al. 2017) from a TFDS data_dir prepared as array_record.

TFDS's ``dsprites`` builder stores the hdf5's 0/1 pixels as uint8 PNGs [64, 64, 1] and the
factor classes as ClassLabels ``label_shape`` (3), ``label_scale`` (6), ``label_orientation``
(40), ``label_x_position`` (32), ``label_y_position`` (32); shape classes are 0, 1, 2 as here.

TFDS shuffles the records when it prepares a dataset, so a record's index says nothing about its
factors. The first ground-truth call therefore reads the five labels of every record once and
keeps a factor -> record table in memory (3 MB). The records are parsed here from their raw
bytes, not decoded by TFDS: for all 737280 records of a `write_procedural` stand-in that takes
14-19 s of CPU (10-35 s wall on 2 shared cores), where TFDS's per-example decoding costs ~136 us
a record even with the image skipped (~100 s) and ~390 us with it (~290 s).
"""

import io
import logging
import threading
import time

import numpy as np

from vae_jax.data import dsprites
from vae_jax.data import ground_truth
from vae_jax.data import tfds_source
from vae_jax.errors import UserError

NAME = 'dsprites'
# The builder's features for the factors, in `dsprites.FACTOR_NAMES` order.
LABEL_KEYS = ('label_shape', 'label_scale', 'label_orientation', 'label_x_position',
              'label_y_position')
VALUE_KEYS = tuple(key.replace('label_', 'value_') for key in LABEL_KEYS)
_SIZE = dsprites.IMAGE_SIZE
_INDEX_CHUNK = 8192  # records read at a time while building the factor table


def _parse(records):
    """Serialized ``tf.train.Example`` bytes [n] -> the parsed protos [n]."""
    from tensorflow_datasets.proto import tf_example_pb2  # TFDS's own (TF-free) proto.
    return [tf_example_pb2.Example.FromString(record) for record in records]


def _factor_classes(examples):
    """Parsed examples [n] -> int8 ``[n, 5]`` factor classes."""
    return np.array([[ex.features.feature[key].int64_list.value[0] for key in LABEL_KEYS]
                     for ex in examples], np.int8).reshape(-1, len(LABEL_KEYS))


def _check_features(builder):
    features = builder.info.features
    sizes = [features[key].num_classes if key in features else None for key in LABEL_KEYS]
    shape = tuple(features['image'].shape) if 'image' in features else None
    if tuple(sizes) != dsprites.factor_sizes() or shape != (_SIZE, _SIZE, 1):
        raise UserError(
            f'The dsprites in {builder.data_dir} does not have the expected features (image '
            f'[64, 64, 1], {", ".join(LABEL_KEYS)} with {dsprites.factor_sizes()} classes); '
            f'got image {shape} and classes {tuple(sizes)}.')


class DSpritesTfdsSource:
    """Real dSprites as a `Source` (label: the shape class) and a `GroundTruthData`.

    Decoded images are kept bit-packed (512 bytes each; 377 MB for all 737280), so only the first
    epoch decodes PNGs (~200 us per record).

    Args:
        data_dir: a TFDS data_dir holding ``dsprites`` prepared as array_record; None means
            ``$TFDS_DATA_DIR`` or TFDS's default ``~/tensorflow_datasets``. Never downloads.
        split: a TFDS split spec; dSprites has only ``'train'``, all 737280 images.
    """

    example_shape = (_SIZE, _SIZE, 1)
    num_classes = len(dsprites.SHAPES)
    factor_names = dsprites.FACTOR_NAMES
    factor_sizes = dsprites.factor_sizes()
    unique_observations = True  # one image per factor combination

    def __init__(self, data_dir=None, split='train'):
        import tensorflow_datasets as tfds  # Slow to import; only needed here.

        self.data_dir = tfds_source.resolve_data_dir(data_dir)
        self.split = split
        builder, _ = tfds_source._open(NAME, split, self.data_dir)  # One UserError if missing.
        _check_features(builder)
        # Raw records, parsed by `_parse`: TFDS's per-example decoding is the slow part.
        self._records = builder.as_data_source(
            split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
        self._image_feature = builder.info.features['image']
        self.num_examples = n = len(self._records)
        self._packed = np.zeros((n, _SIZE * _SIZE // 8), np.uint8)
        # Factors of the decoded records, and of all records once the table is built.
        self._factors = np.zeros((n, len(LABEL_KEYS)), np.int8)
        self._decoded = np.zeros((n,), bool)
        self._record_of = None  # int32 [737280]: row-major factor index -> record, -1 if absent
        # The prefetch thread and the main thread (eval, metrics) may read the same source:
        # _lock guards the image cache, _table_lock the table, _read_lock the record reader.
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def __repr__(self):
        return f'DSpritesTfdsSource(data_dir={self.data_dir!r}, split={self.split!r})'

    def _check_indices(self, indices):
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f'indices outside [0, {self.num_examples}) for {self!r}')
        return indices

    def _read(self, records):
        """Record indices (list [n]) -> their parsed ``tf.train.Example`` protos [n]."""
        with self._read_lock:
            raw = self._records.__getitems__(records)
        return _parse(raw)

    def _decode(self, indices):
        """Decodes and caches the records among ``indices`` (int [n]) not decoded yet."""
        with self._lock:
            missing = np.unique(indices[~self._decoded[indices]])
            if missing.size == 0:
                return
            examples = self._read(missing.tolist())
            pngs = [ex.features.feature['image'].bytes_list.value[0] for ex in examples]
            images = np.stack([self._image_feature.decode_example_np(png) for png in pngs])
            # `!= 0`: the stored pixels are 0/1 already; this keeps them binary under any scale.
            self._packed[missing] = np.packbits(images.reshape(len(missing), -1) != 0, axis=1)
            self._factors[missing] = _factor_classes(examples)
            self._decoded[missing] = True  # Last, so a reader never sees a half-written record.

    def get_batch(self, indices):
        """int ``[n]`` -> ``{'image': float32 [n, 64, 64, 1] in {0, 1}, 'label': int32 [n]}``."""
        indices = self._check_indices(indices)
        if not self._decoded[indices].all():
            self._decode(indices)
        bits = np.unpackbits(self._packed[indices], axis=1)
        return {'image': bits.reshape(-1, *self.example_shape).astype(np.float32),
                'label': self._factors[indices, 0].astype(np.int32)}

    def _table(self):
        """int32 ``[737280]``: row-major factor index (`dsprites.factor_classes_to_index`) ->
        record index, -1 where the split has no such record. Built on first use."""
        with self._table_lock:
            if self._record_of is None:
                start = time.perf_counter()
                n = self.num_examples
                # Chunk by chunk, so a training thread's reads go on in between.
                factors = np.concatenate([np.zeros((0, len(LABEL_KEYS)), np.int8)] + [
                    _factor_classes(self._read(list(range(i, min(i + _INDEX_CHUNK, n)))))
                    for i in range(0, n, _INDEX_CHUNK)])
                flat = dsprites.factor_classes_to_index(factors)
                record_of = np.full(dsprites.NUM_EXAMPLES, -1, np.int32)
                record_of[flat] = np.arange(n, dtype=np.int32)
                twice = np.flatnonzero(record_of[flat] != np.arange(n))
                if twice.size:
                    first = int(twice[0])
                    raise UserError(
                        f'{self!r}: records {first} and {int(record_of[flat[first]])} both have '
                        f'factors {factors[first].tolist()}; dSprites has one image per '
                        f'combination. Rebuild it with `tfds build {NAME}`.')
                self._factors[:] = factors  # The same values where already decoded.
                self._record_of = record_of
                logging.info('Indexed %d dSprites records by factor in %.1f s.', n,
                             time.perf_counter() - start)
            return self._record_of

    @property
    def num_factor_combinations(self):
        """How many of the 737280 factor combinations the split holds (reads every label)."""
        return int((self._table() >= 0).sum())

    def get_factors(self, indices):
        """int ``[n]`` record indices -> int64 ``[n, 5]`` factor classes (builds the table)."""
        indices = self._check_indices(indices)
        self._table()
        return self._factors[indices].astype(np.int64)

    def sample_factors(self, num, rng):
        """int64 ``[num, 5]`` factor classes, each factor uniform over its values."""
        return ground_truth.sample_uniform_factors(self.factor_sizes, num, rng)

    def sample_observations_from_factors(self, factors, rng):
        """int ``[n, 5]`` factor classes -> float32 ``[n, 64, 64, 1]``: the records with them.

        ``rng`` is unused: each factor combination has exactly one image. Raises UserError if
        the split lacks a combination (a partial split or a broken preparation).
        """
        del rng
        factors = ground_truth.check_factors(factors, self.factor_sizes)
        table = self._table()
        records = table[dsprites.factor_classes_to_index(factors)]
        absent = records < 0
        if absent.any():
            missing = dict(zip(self.factor_names, factors[np.argmax(absent)].tolist()))
            raise UserError(
                f'{self!r} has no image with factors {missing} ({int(absent.sum())} of the '
                f'{len(factors)} requested combinations are missing; it holds '
                f'{int((table >= 0).sum())} of {dsprites.NUM_EXAMPLES}). Ground truth needs the '
                f'whole split of a complete `tfds build {NAME} --data_dir={self.data_dir} '
                f'--file_format=array_record`.')
        return self.get_batch(records)['image']


def _png(image):
    """uint8 [64, 64, 1] -> PNG bytes (TFDS's Image feature encodes arrays only through TF)."""
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(image[..., 0]).save(out, format='png')
    return out.getvalue()


def write_procedural(data_dir, indices=None):
    """Prepares a procedural stand-in for ``dsprites`` in `data_dir`, through TFDS's own writer.

    For tests and benchmarks where the real hdf5 cannot be downloaded: the real builder (its
    features, version, shuffling and array_record files) with its download replaced by
    `dsprites.render`. Needs no TensorFlow and no network.

    Args:
        data_dir: a TFDS data_dir; the dataset lands in ``data_dir/dsprites/<version>``.
        indices: int ``[m]`` row-major grid indices to include (see
            `dsprites.index_to_factor_classes`); None means all 737280 (~4 min, 274 MB).

    Returns:
        The directory of the prepared dataset.
    """
    import tensorflow_datasets as tfds

    indices = np.arange(dsprites.NUM_EXAMPLES) if indices is None else np.asarray(indices)

    def examples():
        for start in range(0, len(indices), 4096):
            chunk = indices[start:start + 4096]
            classes = dsprites.index_to_factor_classes(chunk)
            values = dsprites.factor_values(classes).astype(np.float32)
            values[:, 0] += 1  # The hdf5 stores shape values 1, 2, 3.
            images = dsprites.render(classes).astype(np.uint8)
            for key, c, v, image in zip(chunk, classes, values, images):
                yield int(key), {'image': _png(image), **dict(zip(LABEL_KEYS, c)),
                                 **dict(zip(VALUE_KEYS, v))}

    builder = tfds.builder(NAME, data_dir=str(data_dir), file_format='array_record')
    # Shadows the builder's hdf5 download on this instance only.
    builder._split_generators = lambda dl_manager: {'train': examples()}
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder.data_dir
