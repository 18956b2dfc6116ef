"""TfdsSource on the real prepared datasets, and the batch pipeline (order, resume, sharding)."""

import gc
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vae_jax.data import epoch_permutation
from vae_jax.data import eval_batches
from vae_jax.data import global_batch_indices
from vae_jax.data import Source
from vae_jax.data import TfdsSource
from vae_jax.data import train_batches
from vae_jax.errors import UserError

TFDS_DIR = Path(os.environ.get(
    'VAE_JAX_TFDS_DIR', Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'tfds'))
needs_tfds = pytest.mark.skipif(
    not (TFDS_DIR / 'mnist').is_dir(),
    reason=f'no prepared TFDS datasets at {TFDS_DIR} (set VAE_JAX_TFDS_DIR)')


class IndexSource:
    """Example i is the image [i] with label i % 7, so a batch shows which examples it read."""

    example_shape = (1,)
    num_classes = 7

    def __init__(self, num_examples):
        self.num_examples = num_examples

    def get_batch(self, indices):
        indices = np.asarray(indices)
        return {'image': indices[:, None].astype(np.float32),
                'label': (indices % 7).astype(np.int32)}


# ---- TfdsSource -----------------------------------------------------------------------------


@needs_tfds
@pytest.mark.parametrize('name, split, size, classes', [
    ('mnist', 'test', 10000, 10), ('fashion_mnist', 'test', 10000, 10)])
def test_tfds_source_matches_direct_tfds_reading(name, split, size, classes):
    import tensorflow_datasets as tfds
    src = TfdsSource(name, split, data_dir=TFDS_DIR)
    assert isinstance(src, Source)
    assert (src.num_examples, src.example_shape, src.num_classes) == (size, (28, 28, 1), classes)
    idx = np.array([0, 17, 9999, 17, 4242])
    batch = src.get_batch(idx)
    assert batch['image'].dtype == np.float32 and batch['image'].shape == (5, 28, 28, 1)
    assert batch['label'].dtype == np.int32 and batch['label'].shape == (5,)
    assert batch['image'].min() >= 0 and batch['image'].max() == 1
    direct = tfds.data_source(name, split=split, data_dir=str(TFDS_DIR), download=False)
    for row, i in enumerate(idx):
        np.testing.assert_array_equal(
            batch['image'][row], direct[int(i)]['image'].astype(np.float32) / 255)
        assert batch['label'][row] == direct[int(i)]['label']


@needs_tfds
def test_binarized_mnist_is_exactly_binary_without_labels():
    src = TfdsSource('binarized_mnist', 'validation', data_dir=TFDS_DIR)
    assert (src.num_examples, src.num_classes) == (10000, 0)
    batch = src.get_batch(np.arange(0, 10000, 97))
    assert set(np.unique(batch['image'])) == {0.0, 1.0}
    assert 0.05 < batch['image'].mean() < 0.3  # Digits, not blank or inverted images.
    np.testing.assert_array_equal(batch['label'], 0)


@needs_tfds
def test_tfds_source_loads_the_split_once():
    # A split no other test reads: sources of the same split share one decoded copy.
    # (tests/test_data_cache.py tests the cache folder that later processes read it from.)
    src = TfdsSource('mnist', 'test[:37]', data_dir=TFDS_DIR)
    assert src.num_cached == 0 and src.from_cache is None
    first = src.get_batch(np.array([3, 1, 3, 2]))
    assert src.num_cached == 37 and src.load_seconds >= 0  # The whole split, at once.

    class Unreadable:
        def __getitems__(self, keys):
            raise AssertionError(f'decoded again: {keys}')

    records, src._records = src._records, Unreadable()
    again = src.get_batch(np.array([1, 2, 3, 3]))  # Loaded: pure numpy.
    np.testing.assert_array_equal(again['image'], first['image'][[1, 3, 0, 2]])
    np.testing.assert_array_equal(again['label'], first['label'][[1, 3, 0, 2]])
    assert src.get_batch(np.array([36]))['image'].shape == (1, 28, 28, 1)
    twin = TfdsSource('mnist', 'test[:37]', data_dir=TFDS_DIR)
    twin._records = Unreadable()
    np.testing.assert_array_equal(twin.get_batch(np.array([3]))['image'], first['image'][:1])
    src._records = records
    with pytest.raises(IndexError):
        src.get_batch(np.array([37]))


def test_missing_dataset_is_one_user_error_naming_data_dir(tmp_path):
    with pytest.raises(UserError) as err:
        TfdsSource('mnist', 'train', data_dir=tmp_path)
    msg = str(err.value)
    assert "'mnist'" in msg and str(tmp_path) in msg
    assert f'tfds build mnist --data_dir={tmp_path} --file_format=array_record' in msg
    assert 'TFDS_DATA_DIR' in msg
    assert list(tmp_path.iterdir()) == []  # Nothing downloaded or created.


def test_missing_dataset_in_env_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'env_dir'))
    with pytest.raises(UserError, match='env_dir'):
        TfdsSource('fashion_mnist', 'test')


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UserError, match='mnist, fashion_mnist, binarized_mnist'):
        TfdsSource('cifar10', 'train')


@needs_tfds
def test_unknown_split_is_user_error():
    with pytest.raises(UserError, match="'valid'.*validation"):
        TfdsSource('binarized_mnist', 'valid', data_dir=TFDS_DIR)


# ---- order ----------------------------------------------------------------------------------


def test_epoch_permutation_is_deterministic_and_a_permutation():
    a = epoch_permutation(1000, seed=3, epoch=2)
    np.testing.assert_array_equal(a, epoch_permutation(1000, seed=3, epoch=2))
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, epoch_permutation(1000, seed=3, epoch=3))
    assert not np.array_equal(a, epoch_permutation(1000, seed=4, epoch=2))


def test_global_batches_cover_each_example_once_per_epoch_dropping_remainder():
    n, gb = 103, 10  # 10 steps per epoch; 3 examples of each epoch's order are dropped.
    epoch0 = np.concatenate([global_batch_indices(n, gb, 0, s) for s in range(10)])
    np.testing.assert_array_equal(epoch0, epoch_permutation(n, 0, 0)[:100])
    assert len(np.unique(epoch0)) == 100
    np.testing.assert_array_equal(global_batch_indices(n, gb, 0, 10), epoch_permutation(n, 0, 1)[:10])
    np.testing.assert_array_equal(global_batch_indices(n, gb, 0, 23), epoch_permutation(n, 0, 2)[30:40])


def _collect(it):
    return [{k: v.copy() for k, v in b.items()} for b in it]


def test_train_batches_layout_index_and_order():
    src = IndexSource(100)
    batches = _collect(train_batches(src, seed=1, global_batch=12, start_step=0, num_steps=10,
                                     local_device_count=4))
    assert len(batches) == 10  # Crosses into epoch 1 at step 8.
    for step, b in enumerate(batches):
        assert b['image'].shape == (4, 3, 1) and b['image'].dtype == np.float32
        assert b['label'].shape == b['index'].shape == (4, 3)
        assert b['index'].dtype == np.int32
        np.testing.assert_array_equal(b['index'].ravel(), np.arange(12))
        np.testing.assert_array_equal(b['image'].ravel(), global_batch_indices(100, 12, 1, step))
        np.testing.assert_array_equal(b['label'], b['image'][..., 0].astype(int) % 7)


def test_resumed_run_sees_the_same_batches():
    src = IndexSource(50)
    kw = dict(seed=7, global_batch=8, local_device_count=2)
    full = _collect(train_batches(src, start_step=0, num_steps=15, **kw))
    resumed = _collect(train_batches(src, start_step=9, num_steps=6, **kw))
    for a, b in zip(full[9:], resumed, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_hosts_split_the_single_host_global_batch():
    src = IndexSource(64)
    kw = dict(seed=0, global_batch=16, start_step=3, num_steps=4)
    single = _collect(train_batches(src, local_device_count=1, **kw))
    hosts = [_collect(train_batches(src, local_device_count=2, process_index=p, process_count=2,
                                    **kw)) for p in range(2)]
    for step in range(4):
        for k in ('image', 'label', 'index'):
            joined = np.concatenate([hosts[p][step][k].reshape(-1, *hosts[p][step][k].shape[2:])
                                     for p in range(2)])
            np.testing.assert_array_equal(joined, single[step][k][0])
        np.testing.assert_array_equal(hosts[1][step]['index'], [[8, 9, 10, 11], [12, 13, 14, 15]])


def test_prefetch_off_gives_same_batches():
    src = IndexSource(40)
    kw = dict(seed=2, global_batch=8, start_step=0, num_steps=6, local_device_count=2)
    for a, b in zip(_collect(train_batches(src, prefetch=0, **kw)),
                    _collect(train_batches(src, prefetch=3, **kw)), strict=True):
        np.testing.assert_array_equal(a['image'], b['image'])


def test_layout_errors():
    src = IndexSource(20)
    with pytest.raises(UserError, match='not divisible by the number of devices 6'):
        train_batches(src, seed=0, global_batch=8, start_step=0, local_device_count=3,
                      process_count=2)
    with pytest.raises(UserError, match='larger than the dataset'):
        train_batches(src, seed=0, global_batch=24, start_step=0, local_device_count=1)
    with pytest.raises(UserError, match='not divisible'):
        eval_batches(src, global_batch=10, local_device_count=4)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == 'vae_jax-prefetch']


def _wait_for_no_prefetch_threads():
    for _ in range(50):
        if not _prefetch_threads():
            return True
        time.sleep(0.05)
    return False


def test_prefetch_thread_stops_when_iterator_is_dropped_or_closed():
    assert _wait_for_no_prefetch_threads()
    it = train_batches(IndexSource(100), seed=0, global_batch=4, start_step=0,
                       local_device_count=1)  # Endless.
    next(it)
    assert len(_prefetch_threads()) == 1 and all(t.daemon for t in _prefetch_threads())
    del it
    gc.collect()
    assert _wait_for_no_prefetch_threads()
    it = train_batches(IndexSource(100), seed=0, global_batch=4, start_step=0,
                       local_device_count=1)
    it.close()
    assert _wait_for_no_prefetch_threads()
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_reraises_source_errors():
    class Broken(IndexSource):
        def get_batch(self, indices):
            raise UserError('cannot read')

    it = train_batches(Broken(10), seed=0, global_batch=2, start_step=0, local_device_count=1)
    with pytest.raises(UserError, match='cannot read'):
        next(it)


@pytest.mark.parametrize('max_examples, expected', [(None, 103), (50, 50), (1000, 103)])
def test_eval_covers_every_example_once_with_exact_mask(max_examples, expected):
    src = IndexSource(103)
    hosts = [_collect(eval_batches(src, global_batch=20, local_device_count=2, process_index=p,
                                   process_count=2, max_examples=max_examples)) for p in range(2)]
    assert len(hosts[0]) == len(hosts[1]) == -(-expected // 20)
    real, mask_sum = [], 0.0
    for host in hosts:
        for b in host:
            assert b['image'].shape == (2, 5, 1) and b['mask'].dtype == np.float32
            real.append(b['image'][b['mask'] == 1][:, 0])
            # 'index' is the position in the pass: the dataset index of real examples.
            np.testing.assert_array_equal(b['index'][b['mask'] == 1], b['image'][b['mask'] == 1][:, 0])
            mask_sum += b['mask'].sum()
    np.testing.assert_array_equal(np.sort(np.concatenate(real)), np.arange(expected))
    assert mask_sum == expected


@needs_tfds
def test_train_and_eval_batches_on_real_mnist():
    src = TfdsSource('mnist', 'test', data_dir=TFDS_DIR)
    batches = _collect(train_batches(src, seed=5, global_batch=64, start_step=156, num_steps=2,
                                     local_device_count=2))  # Step 156 is the first of epoch 1.
    for step, b in zip((156, 157), batches):
        assert b['image'].shape == (2, 32, 28, 28, 1)
        want = src.get_batch(global_batch_indices(src.num_examples, 64, 5, step))
        np.testing.assert_array_equal(b['image'].reshape(64, 28, 28, 1), want['image'])
        np.testing.assert_array_equal(b['label'].ravel(), want['label'])
    evals = _collect(eval_batches(src, global_batch=96, local_device_count=2, max_examples=200))
    assert len(evals) == 3 and sum(b['mask'].sum() for b in evals) == 200
    np.testing.assert_array_equal(evals[0]['label'].ravel(), src.get_batch(np.arange(96))['label'])
