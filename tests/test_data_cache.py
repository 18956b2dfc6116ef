"""The decoded-split cache of TfdsSource (vae_jax/data/tfds_source.py, vae_jax/cache.py), on the
real prepared datasets: what it holds, who reads it, when it is ignored, and what may break it."""

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vae_jax import cache
from vae_jax.data import tfds_source
from vae_jax.data.tfds_source import TfdsSource

SPLIT = 'test[:300]'
N = 300


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    """An empty $VAE_JAX_CACHE of this test, the cache on, and no split loaded in the process."""
    root = tmp_path / 'cache'
    monkeypatch.setenv('VAE_JAX_CACHE', str(root))
    monkeypatch.delenv('VAE_JAX_DATA_CACHE', raising=False)
    forget_loaded(monkeypatch)
    return root


def forget_loaded(monkeypatch):
    """Drops the splits loaded in this process: the next source loads as a new process would."""
    monkeypatch.setattr(tfds_source, '_SPLITS', {})


def cache_files(root):
    return sorted(p.name for p in (root / 'decoded').iterdir())


def absl_messages(caplog, level=logging.INFO):
    return [r.getMessage() for r in caplog.records if r.name == 'absl' and r.levelno >= level]


def test_the_suite_never_writes_to_the_home_cache():
    # tests/conftest.py points $VAE_JAX_CACHE at this session's temporary folder, and JAX's
    # compilation cache (set when vae_jax is imported) inside it.
    import jax
    assert cache.cache_dir() != Path.home() / '.cache' / 'vae_jax'
    assert cache.cache_dir().name.startswith('vae_jax_test_cache_')
    assert Path(jax.config.jax_compilation_cache_dir) == cache.cache_dir() / 'jax'


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist', 'binarized_mnist'])
def test_cache_holds_exactly_what_tfds_decodes(name, tfds_dir, cache_root, monkeypatch, caplog):
    import tensorflow_datasets as tfds
    caplog.set_level(logging.INFO, logger='absl')
    src = TfdsSource(name, SPLIT, tfds_dir)
    assert src.from_cache is None and src.num_cached == 0
    batch = src.get_batch(np.arange(N))
    assert src.from_cache is False and src.load_seconds > 0 and src.num_cached == N

    direct = tfds.data_source(name, split=SPLIT, data_dir=tfds_dir, download=False)
    examples = direct.__getitems__(list(range(N)))
    want_images = np.stack([ex['image'] for ex in examples])
    want_labels = np.array([ex.get('label', 0) for ex in examples], np.int32)
    stem = cache_root / 'decoded' / src.cache_key
    assert cache_files(cache_root) == [f'{src.cache_key}.images.npy', f'{src.cache_key}.labels.npy']
    images, labels = np.load(f'{stem}.images.npy'), np.load(f'{stem}.labels.npy')
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(images, want_images)  # integers: equal means bitwise equal
    np.testing.assert_array_equal(labels, want_labels)
    pixel_max = np.float32(255 if name != 'binarized_mnist' else 1)
    np.testing.assert_array_equal(batch['image'], want_images.astype(np.float32) / pixel_max)
    np.testing.assert_array_equal(batch['label'], want_labels)

    forget_loaded(monkeypatch)
    again = TfdsSource(name, SPLIT, tfds_dir)
    idx = np.array([N - 1, 0, 7, 7])
    second = again.get_batch(idx)
    assert again.from_cache is True and again.load_seconds < src.load_seconds
    np.testing.assert_array_equal(second['image'], batch['image'][idx])
    np.testing.assert_array_equal(second['label'], batch['label'][idx])
    messages = absl_messages(caplog)
    assert any(m.startswith(f'{name} {SPLIT}: {N} images decoded in ') and 'cached to' in m
               for m in messages), messages
    assert any(m.startswith(f'{name} {SPLIT}: {N} images read from cache in ')
               for m in messages), messages


def test_a_new_process_reads_the_cache(tfds_dir, cache_root, tmp_path, repo):
    src = TfdsSource('mnist', SPLIT, tfds_dir)
    idx = np.array([N - 1, 0, 17, 17, 150])
    batch = src.get_batch(idx)
    assert src.from_cache is False
    out = tmp_path / 'child.npz'
    code = (
        'import numpy as np\n'
        'from vae_jax.data.tfds_source import TfdsSource\n'
        f'src = TfdsSource("mnist", {SPLIT!r}, {tfds_dir!r})\n'
        f'batch = src.get_batch(np.array({idx.tolist()}))\n'
        f'np.savez({str(out)!r}, from_cache=src.from_cache, **batch)\n')
    child = subprocess.run([sys.executable, '-c', code], cwd=repo, env=dict(os.environ),
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    got = np.load(out)
    assert bool(got['from_cache'])
    np.testing.assert_array_equal(got['image'], batch['image'])
    np.testing.assert_array_equal(got['label'], batch['label'])


def test_changed_dataset_files_or_format_invalidate_the_cache(tfds_dir, cache_root, tmp_path,
                                                             monkeypatch):
    data_dir = tmp_path / 'tfds'
    shutil.copytree(Path(tfds_dir) / 'mnist', data_dir / 'mnist')  # Keeps the mtimes.
    first = TfdsSource('mnist', SPLIT, data_dir)
    batch = first.get_batch(np.arange(N))
    forget_loaded(monkeypatch)
    same = TfdsSource('mnist', SPLIT, data_dir).load()
    assert (first.from_cache, same.from_cache) == (False, True)
    assert same.cache_key == first.cache_key

    shard = next((data_dir / 'mnist').glob('*/mnist-test.array_record*'))
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # As a rebuild would.
    forget_loaded(monkeypatch)
    touched = TfdsSource('mnist', SPLIT, data_dir)
    np.testing.assert_array_equal(touched.get_batch(np.arange(N))['image'], batch['image'])
    assert touched.from_cache is False and touched.cache_key != first.cache_key
    assert len(cache_files(cache_root)) == 4  # Both entries, images and labels.

    monkeypatch.setattr(tfds_source, 'CACHE_FORMAT', tfds_source.CACHE_FORMAT + 1)
    forget_loaded(monkeypatch)
    newer = TfdsSource('mnist', SPLIT, data_dir).load()
    assert newer.from_cache is False and newer.cache_key != touched.cache_key


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'not_numpy', 'other_shape'])
def test_a_damaged_cache_file_is_decoded_again_and_replaced(damage, tfds_dir, cache_root,
                                                            monkeypatch, caplog):
    src = TfdsSource('mnist', SPLIT, tfds_dir)
    want = src.get_batch(np.arange(N))  # Decoded: nothing in this process maps the file.
    path = cache_root / 'decoded' / f'{src.cache_key}.images.npy'
    size = path.stat().st_size
    if damage == 'truncated':
        os.truncate(path, size - 1000)
    elif damage == 'empty':
        os.truncate(path, 0)
    elif damage == 'not_numpy':
        path.write_bytes(b'\x00garbage' * (size // 8))
    else:
        np.save(path, np.zeros((N - 1, 28, 28, 1), np.uint8))

    caplog.set_level(logging.INFO, logger='absl')
    forget_loaded(monkeypatch)
    again = TfdsSource('mnist', SPLIT, tfds_dir)
    got = again.get_batch(np.arange(N))
    assert again.from_cache is False
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['label'], want['label'])
    warnings = absl_messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and 'damaged cache file' in warnings[0], warnings
    assert str(path) in warnings[0]
    assert path.stat().st_size == size  # Rewritten whole.
    forget_loaded(monkeypatch)
    assert TfdsSource('mnist', SPLIT, tfds_dir).load().from_cache is True


@pytest.mark.parametrize('how', ['under_a_file', 'read_only'])
def test_an_unwritable_cache_folder_costs_only_the_decoding(how, tfds_dir, tmp_path,
                                                            monkeypatch, caplog):
    if how == 'under_a_file':
        (tmp_path / 'a_file').write_text('')
        root = tmp_path / 'a_file' / 'cache'
    else:
        if os.geteuid() == 0:
            pytest.skip('root writes into read-only folders')
        root = tmp_path / 'read_only'
        root.mkdir(mode=0o555)
    monkeypatch.setenv('VAE_JAX_CACHE', str(root))
    monkeypatch.setattr(cache, '_WARNED_UNWRITABLE', set())
    forget_loaded(monkeypatch)
    caplog.set_level(logging.INFO, logger='absl')
    for split in (SPLIT, 'test[:200]'):
        src = TfdsSource('mnist', split, tfds_dir)
        batch = src.get_batch(np.arange(200))
        assert src.from_cache is False and batch['image'].shape == (200, 28, 28, 1)
        assert 0.05 < batch['image'].mean() < 0.3
    warnings = absl_messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and 'Cannot write the cache' in warnings[0], warnings  # Once.
    assert sum('not cached: the cache folder is not writable' in m
               for m in absl_messages(caplog)) == 2
    assert not (root / 'decoded').exists()


def test_VAE_JAX_DATA_CACHE_0_neither_reads_nor_writes_files(tfds_dir, cache_root, monkeypatch):
    TfdsSource('mnist', SPLIT, tfds_dir).load()  # An entry the disabled cache must not read.
    written = cache_files(cache_root)
    monkeypatch.setenv('VAE_JAX_DATA_CACHE', '0')
    for split, size in ((SPLIT, N), ('test[:200]', 200)):
        forget_loaded(monkeypatch)
        src = TfdsSource('mnist', split, tfds_dir).load()
        assert src.from_cache is False and src.num_cached == size
    assert cache_files(cache_root) == written


def test_racing_writers_never_show_a_reader_half_a_file(tmp_path, caplog):
    stem = tmp_path / 'decoded' / 'entry'
    arrays = {'images': np.arange(2**20, dtype=np.uint8).reshape(1024, 1024),
              'labels': np.arange(1024, dtype=np.int32)}
    spec = {field: (array.shape, array.dtype) for field, array in arrays.items()}
    caplog.set_level(logging.WARNING, logger='absl')
    results, reads = [], []

    def write():
        results.extend(cache.save_arrays(stem, arrays) for _ in range(10))

    writers = [threading.Thread(target=write) for _ in range(2)]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        got = cache.load_arrays(stem, spec)  # Missing (None) or whole, never damaged.
        if got is not None:
            reads.append(all(np.array_equal(got[f], arrays[f]) for f in arrays))
    for thread in writers:
        thread.join()
    final = cache.load_arrays(stem, spec)
    reads.append(all(np.array_equal(final[f], arrays[f]) for f in arrays))
    assert results == [True] * 20 and all(reads)
    assert absl_messages(caplog, logging.WARNING) == []
    assert sorted(p.name for p in stem.parent.iterdir()) == ['entry.images.npy',
                                                            'entry.labels.npy']  # No temps.


def test_saving_again_keeps_a_good_file_and_replaces_a_damaged_one(tmp_path):
    """A published file may be memory-mapped by another process: a second save of the same
    entry leaves it in place (the same inode); a damaged one is replaced."""
    stem = tmp_path / 'entry'
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1)
    assert cache.save_arrays(stem, {'images': images})
    path = tmp_path / 'entry.images.npy'
    inode = path.stat().st_ino
    assert cache.save_arrays(stem, {'images': images})
    assert path.stat().st_ino == inode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
    path.write_bytes(path.read_bytes()[:40])  # torn
    assert cache.save_arrays(stem, {'images': images})
    np.testing.assert_array_equal(
        cache.load_arrays(stem, {'images': (images.shape, images.dtype)})['images'], images)
