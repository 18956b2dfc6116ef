"""Real dSprites through TFDS, on a small stand-in that TFDS's own writer prepares offline.

`tfds.testing.mock_data` (TFDS 4.9) does mock `tfds.data_source`, but not in a way this source can
use: it leaves ``builder.is_prepared()`` false unless real metadata files exist, and its raw-bytes
records are serialized through TensorFlow, which is not installed. So `write_procedural` runs the
real ``dsprites`` builder with its download replaced by the procedural renders: the real
features, array_record files and record shuffling, with known images for known factors.
"""

import socket
import threading

import numpy as np
import pytest

from vae_jax import configs
from vae_jax.data import dsprites
from vae_jax.data.dsprites_tfds import DSpritesTfdsSource
from vae_jax.data.dsprites_tfds import write_procedural
from vae_jax.data.ground_truth import as_ground_truth
from vae_jax.data.ground_truth import GroundTruthData
from vae_jax.data.registry import make_sources
from vae_jax.data.registry import Subset
from vae_jax.data.source import Source
from vae_jax.errors import UserError

# The grid indices the stand-in holds: 3000 of the 737280 combinations.
GRID = np.random.default_rng(0).choice(dsprites.NUM_EXAMPLES, 3000, replace=False)


@pytest.fixture(scope='module', autouse=True)
def no_network():
    def refuse(*args, **kwargs):
        raise AssertionError(f'network access: {args}')

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, 'connect', refuse)
        patch.setattr(socket, 'getaddrinfo', refuse)
        yield


@pytest.fixture(scope='module')
def sources(tmp_path_factory, no_network):
    data_dir = tmp_path_factory.mktemp('tfds')
    write_procedural(data_dir, GRID)
    config = configs.base_config()
    config.data.name = 'dsprites'
    config.data.dsprites_source = 'tfds'
    config.data.data_dir = str(data_dir)
    configs.validate(config)
    return make_sources(config.data, seed=0)


def test_make_sources_reads_labelled_binary_images(sources):
    train, eval_source = sources
    full = train.source
    assert isinstance(full, DSpritesTfdsSource)
    assert isinstance(full, Source) and isinstance(full, GroundTruthData)
    assert (full.num_examples, full.example_shape, full.num_classes) == (3000, (64, 64, 1), 3)
    # The eval set is a fixed tenth of this 3000-record stand-in, held out of training, as
    # for the procedural source.
    assert isinstance(eval_source, Subset) and eval_source.source is full
    assert (eval_source.num_examples, train.num_examples) == (300, 2700)
    assert not np.isin(eval_source.indices, train.indices).any()
    train = full

    idx = np.random.default_rng(1).integers(0, 3000, 100)
    batch = train.get_batch(idx)
    assert batch['image'].shape == (100, 64, 64, 1) and batch['image'].dtype == np.float32
    assert set(np.unique(batch['image'])) == {0.0, 1.0}
    assert batch['label'].dtype == np.int32 and set(batch['label']) <= {0, 1, 2}
    factors = train.get_factors(idx)
    np.testing.assert_array_equal(batch['label'], factors[:, 0])
    # Each record's image is the render of that record's own labels.
    np.testing.assert_array_equal(batch['image'], dsprites.render(factors))
    with pytest.raises(IndexError):
        train.get_batch(np.array([3000]))


def test_decoded_images_are_cached(sources):
    train = sources[0].source  # the whole source behind the training subset
    idx = np.arange(40, 60)
    first = train.get_batch(idx)
    records, train._records = train._records, None  # Any read now fails.
    try:
        np.testing.assert_array_equal(train.get_batch(idx[::-1])['image'], first['image'][::-1])
    finally:
        train._records = records


def test_table_and_batches_can_be_read_from_two_threads(sources):
    train = sources[0].source  # the whole source behind the training subset
    fresh = DSpritesTfdsSource(train.data_dir)  # No table, nothing decoded yet.
    idx = np.random.default_rng(5).permutation(3000)[:1200].reshape(12, 100)
    images = {}

    def read_batches():
        for k, i in enumerate(idx):
            images[k] = fresh.get_batch(i)['image']

    reader = threading.Thread(target=read_batches)
    reader.start()
    table = fresh._table()
    reader.join()
    assert (table >= 0).sum() == 3000
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(images[k], train.get_batch(i)['image'])


def test_records_are_shuffled_so_a_factor_table_is_needed(sources):
    train = sources[0].source  # the whole source behind the training subset
    grid_index = dsprites.factor_classes_to_index(train.get_factors(np.arange(3000)))
    np.testing.assert_array_equal(np.sort(grid_index), np.sort(GRID))
    assert (np.diff(grid_index) < 0).sum() > 1000  # Far from the row-major order.
    assert train.num_factor_combinations == 3000


def test_observations_from_factors_are_the_records_with_those_labels(sources):
    eval_source = sources[1]
    train = sources[0].source
    assert as_ground_truth(eval_source) is train
    rng = np.random.default_rng(2)
    factors = dsprites.index_to_factor_classes(rng.choice(GRID, 64))  # Repeats allowed.
    images = train.sample_observations_from_factors(factors, rng)
    assert images.shape == (64, 64, 64, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images, dsprites.render(factors))
    # The same pixels get_batch returns for the record holding each combination.
    records = np.array([np.flatnonzero((train.get_factors(np.arange(3000)) == f).all(1))[0]
                        for f in factors[:5]])
    np.testing.assert_array_equal(train.get_batch(records)['image'], images[:5])


def test_sample_factors_covers_the_whole_grid(sources):
    train = sources[0].source  # the whole source behind the training subset
    factors = train.sample_factors(20_000, np.random.default_rng(0))
    assert factors.shape == (20_000, 5)
    for f, size in enumerate(train.factor_sizes):
        np.testing.assert_array_equal(np.unique(factors[:, f]), np.arange(size))


def test_a_missing_combination_is_a_clear_error(sources):
    train = sources[0].source  # the whole source behind the training subset
    absent = np.arange(10)[~np.isin(np.arange(10), GRID)][:2]
    factors = np.concatenate([dsprites.index_to_factor_classes(GRID[:3]),
                              dsprites.index_to_factor_classes(absent)])
    with pytest.raises(UserError) as err:
        train.sample_observations_from_factors(factors, np.random.default_rng(0))
    msg = str(err.value)
    first = dict(zip(dsprites.FACTOR_NAMES, dsprites.index_to_factor_classes(absent[:1])[0]))
    assert str({k: int(v) for k, v in first.items()}) in msg
    assert '2 of the 5 requested' in msg and 'holds 3000 of 737280' in msg
    with pytest.raises(ValueError, match='outside'):
        train.sample_observations_from_factors(np.array([[3, 0, 0, 0, 0]]), None)


def test_not_prepared_is_one_user_error_naming_the_build_command(tmp_path):
    config = configs.base_config()
    config.data.name = 'dsprites'
    config.data.dsprites_source = 'tfds'
    config.data.data_dir = str(tmp_path)
    with pytest.raises(UserError) as err:
        make_sources(config.data, seed=0)
    msg = str(err.value)
    assert "'dsprites'" in msg and str(tmp_path) in msg and '\n' not in msg
    assert f'tfds build dsprites --data_dir={tmp_path} --file_format=array_record' in msg
    assert list(tmp_path.iterdir()) == []  # Nothing downloaded or created.


def test_tfds_mock_data_matches_the_spec_the_reader_expects(tmp_path):
    """Under `tfds.testing.mock_data` (TFDS's own random dsprites examples, no files, no network):
    the builder's features pass `_check_features`, and `tfds.data_source` examples carry the
    label fields, ranges and image shape that `DSpritesTfdsSource` parses."""
    import tensorflow_datasets as tfds
    from vae_jax.data import dsprites_tfds

    with tfds.testing.mock_data(num_examples=16):
        dsprites_tfds._check_features(tfds.builder('dsprites', data_dir=str(tmp_path)))
        source = tfds.data_source('dsprites', split='train', data_dir=str(tmp_path))
        examples = [source[i] for i in range(len(source))]
    assert len(examples) == 16
    for ex in examples:
        assert ex['image'].shape == (64, 64, 1) and ex['image'].dtype == np.uint8
        factors = [int(ex[key]) for key in dsprites_tfds.LABEL_KEYS]
        assert all(0 <= f < n for f, n in zip(factors, dsprites.factor_sizes()))
