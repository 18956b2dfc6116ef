"""The per-user cache directory, and arrays kept there for every process of the machine.

The directory is ``$VAE_JAX_CACHE``, else ``~/.cache/vae_jax``. Everything in it is derived
(decoded datasets, compiled XLA executables, vae_jax's built CPU kernels, the feature
classifier) and may be deleted at any time.

Arrays are ``.npy`` files, written to a temporary file in the same folder and renamed into place:
a reader sees a whole file or none, and processes that race write the same bytes. They are read
back memory-mapped, so processes that read the same file share its pages.
"""

import os
import threading
from pathlib import Path

import numpy as np
from absl import logging

_WARNED_UNWRITABLE: set = set()  # folders already warned about, so each is warned about once
_WARNED_LOCK = threading.Lock()


def cache_dir() -> Path:
    """``$VAE_JAX_CACHE``, else ``~/.cache/vae_jax``."""
    return Path(os.environ.get('VAE_JAX_CACHE') or Path.home() / '.cache' / 'vae_jax')


def _path(stem: Path, field: str) -> Path:
    return stem.with_name(f'{stem.name}.{field}.npy')


def load_arrays(stem: Path, spec: dict) -> dict | None:
    """Reads arrays saved by `save_arrays`, memory-mapped read-only.

    Args:
        stem: the entry; its arrays are the files ``<stem>.<field>.npy``.
        spec: ``{field: (shape, dtype)}``, what each array must be.

    Returns:
        ``{field: array}``, or None when a file is missing or damaged (unreadable, truncated, of
        another shape or dtype); a damaged file is logged as a warning, never raised.
    """
    arrays = {}
    for field, (shape, dtype) in spec.items():
        path = _path(stem, field)
        if not path.is_file():
            return None
        try:
            array = np.load(path, mmap_mode='r', allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:  # a truncated file fails to map
            logging.warning('Ignoring damaged cache file %s (%s); it will be rewritten.', path, e)
            return None
        if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
            logging.warning('Ignoring damaged cache file %s (%s %s, expected %s %s); it will be '
                            'rewritten.', path, array.dtype, array.shape, np.dtype(dtype),
                            tuple(shape))
            return None
        arrays[field] = np.asarray(array)  # A plain ndarray view of the mapping.
    return arrays


def _publish(tmp: Path, path: Path, array) -> None:
    """Moves `tmp` to `path` without replacing a good file there: another process may have
    that one memory-mapped (on NFS, replacing it could pull its pages away). A damaged or
    different one is replaced."""
    try:
        os.link(tmp, path)  # fails if `path` exists: it is never overwritten by this
        return
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        pass
    try:
        existing = np.load(path, mmap_mode='r', allow_pickle=False)
        if existing.shape == array.shape and existing.dtype == array.dtype:
            return  # a process that raced this one published the same array
    except (OSError, ValueError, EOFError):
        pass
    os.replace(tmp, path)


def save_arrays(stem: Path, arrays: dict) -> bool:
    """Writes each of ``arrays`` ({field: array}) to ``<stem>.<field>.npy`` atomically.

    Returns whether all were written. A folder that cannot be written (read-only, full, under a
    file) is logged as a warning once per folder and otherwise ignored: the cache is an
    optimisation, never a reason to stop.
    """
    folder = stem.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for field, array in arrays.items():
            path = _path(stem, field)
            tmp = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
            try:
                with open(tmp, 'wb') as f:
                    np.save(f, np.ascontiguousarray(array), allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())  # The rename must not land before the bytes do.
                _publish(tmp, path, array)
            finally:
                if tmp.exists():
                    tmp.unlink()
    except OSError as e:
        with _WARNED_LOCK:
            first = folder not in _WARNED_UNWRITABLE
            _WARNED_UNWRITABLE.add(folder)
        if first:
            logging.warning('Cannot write the cache in %s (%s): continuing without it. Set '
                            'VAE_JAX_CACHE to a writable folder to keep decoded data.', folder, e)
        return False
    return True
