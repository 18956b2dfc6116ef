"""Batches for pmap: a deterministic, resumable, host-sharded order, prefetched in a thread.

The order of training examples is a pure function of ``(seed, step)``: a run resumed at step
``s`` sees exactly the batches an uninterrupted run sees from step ``s``, and 1 or N hosts (and
any number of devices) split the same global batch. Each batch carries ``'index'``, every
example's position in the global batch, from which the train step derives per-example keys.
"""

import itertools
import queue
import threading

import numpy as np

from vae_jax.errors import UserError


def epoch_permutation(num_examples, seed, epoch):
    """The order of the examples in one epoch: int ``[num_examples]``, a function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _epoch_and_offset(num_examples, global_batch, step):
    steps_per_epoch = num_examples // global_batch  # The remainder is dropped.
    epoch, i = divmod(step, steps_per_epoch)
    return epoch, i * global_batch


def global_batch_indices(num_examples, global_batch, seed, step):
    """Dataset indices of the global batch at train ``step``: int ``[global_batch]``.

    Epoch ``step // (num_examples // global_batch)`` walks through `epoch_permutation`, dropping
    the last ``num_examples % global_batch`` examples of each epoch's order.
    """
    if not 0 < global_batch <= num_examples:
        raise UserError(f'Global batch size {global_batch} must be in [1, {num_examples}].')
    epoch, start = _epoch_and_offset(num_examples, global_batch, step)
    return epoch_permutation(num_examples, seed, epoch)[start:start + global_batch]


def _check_layout(global_batch, local_device_count, process_index, process_count):
    """Returns ``(per_host, per_device)`` or raises UserError."""
    if global_batch < 1 or local_device_count < 1:
        raise UserError(f'Need global batch >= 1 and >= 1 device, got global batch '
                        f'{global_batch} and {local_device_count} local devices.')
    if not 0 <= process_index < process_count:
        raise UserError(f'process_index {process_index} not in [0, {process_count}).')
    devices = process_count * local_device_count
    if global_batch % devices:
        raise UserError(
            f'Global batch size {global_batch} is not divisible by the number of devices '
            f'{devices} ({process_count} hosts x {local_device_count} local devices); choose a '
            f'multiple of {devices}.')
    return global_batch // process_count, global_batch // devices


def check_fits(source, global_batch: int) -> None:
    """UserError unless one global batch fits in `source` (each epoch drops the remainder)."""
    if global_batch > source.num_examples:
        raise UserError(f'Global batch size {global_batch} is larger than the dataset: a batch '
                        f'cannot be larger than the {source.num_examples} training examples of '
                        f'{source!r}.')


def _to_device_layout(batch, local_device_count, per_device):
    """Reshapes every ``[per_host, ...]`` array to ``[local_device_count, per_device, ...]``."""
    return {k: v.reshape(local_device_count, per_device, *v.shape[1:]) for k, v in batch.items()}


def train_batches(source, *, seed, global_batch, start_step, num_steps=None,
                  local_device_count, process_index=0, process_count=1, prefetch=2):
    """This host's share of the training batches from ``start_step`` on.

    Host ``p`` reads positions ``p * per_host ... (p + 1) * per_host - 1`` of each global batch;
    its ``d``-th local device gets the ``d``-th contiguous slice of that.

    Args:
        source: a `Source`.
        seed: int >= 0; fixes the example order.
        global_batch: examples per step over all hosts and devices.
        start_step: the first step to yield (the train state's step when resuming).
        num_steps: how many batches to yield; None means forever.
        local_device_count, process_index, process_count: the device layout.
        prefetch: batches read ahead in a background thread; 0 reads in the caller's thread.

    Yields:
        ``{'image': float32 [local_device_count, per_device, *example_shape],
        'label': int32 [local_device_count, per_device],
        'index': int32 [local_device_count, per_device]}`` (position in the global batch).
    """
    per_host, per_device = _check_layout(global_batch, local_device_count, process_index,
                                         process_count)
    check_fits(source, global_batch)
    lo = process_index * per_host
    positions = np.arange(lo, lo + per_host, dtype=np.int32)
    cached = {}  # epoch -> permutation; one epoch at a time (737280 dSprites take ~20 ms).

    def make_batch(step):
        epoch, start = _epoch_and_offset(source.num_examples, global_batch, step)
        if epoch not in cached:
            cached.clear()
            cached[epoch] = epoch_permutation(source.num_examples, seed, epoch)
        indices = cached[epoch][start + lo:start + lo + per_host]
        batch = dict(source.get_batch(indices), index=positions)
        return _to_device_layout(batch, local_device_count, per_device)

    steps = (itertools.count(start_step) if num_steps is None
             else iter(range(start_step, start_step + num_steps)))
    return _prefetched(make_batch, steps, prefetch)


def eval_batches(source, *, global_batch, local_device_count, process_index=0,
                 process_count=1, max_examples=None):
    """This host's share of one sequential pass over the first ``max_examples`` examples.

    The last global batch is padded (with example 0) to full size so every step has the same
    shape; ``'mask'`` marks real examples, so ``sum(metric * mask) / sum(mask)`` over all hosts
    is the exact mean. Every host yields the same number of batches, even where its share of
    the last batch is all padding, so cross-host collectives stay in step.

    Yields:
        The `train_batches` dict plus ``'mask': float32 [local_device_count, per_device]``,
        except that ``'index'`` is the position in the whole pass (the dataset index of a real
        example; padding continues past ``max_examples``), so keys derived from it, and hence
        eval metrics, do not depend on the batch size or device count.
    """
    per_host, per_device = _check_layout(global_batch, local_device_count, process_index,
                                         process_count)
    total = source.num_examples if max_examples is None else min(max_examples, source.num_examples)
    num_batches = -(-total // global_batch)
    lo = process_index * per_host
    positions = np.arange(lo, lo + per_host, dtype=np.int32)

    def make_batch(b):
        indices = b * global_batch + positions.astype(np.int64)
        real = indices < total
        batch = source.get_batch(np.where(real, indices, 0))
        batch.update(index=indices.astype(np.int32), mask=real.astype(np.float32))
        return _to_device_layout(batch, local_device_count, per_device)

    return _prefetched(make_batch, iter(range(num_batches)), prefetch=2)


class _Done:
    """Queue marker: the producer finished (``error`` is None) or raised ``error``."""

    def __init__(self, error=None):
        self.error = error


def _put(out, item, stop):
    """Puts ``item`` unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(make_batch, keys, out, stop):
    """Thread body. Holds no reference to the consumer, so the consumer can be collected."""
    try:
        for key in keys:
            if not _put(out, make_batch(key), stop):
                return
        _put(out, _Done(), stop)
    except BaseException as e:  # Re-raised in the consumer's thread.
        _put(out, _Done(e), stop)


class _Prefetcher:
    """Iterator over ``make_batch(key)`` for ``key`` in ``keys``, computed ``size`` ahead.

    The thread is a daemon and stops when the iterator is exhausted, closed, or collected.
    """

    def __init__(self, make_batch, keys, size):
        self._queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=_produce, args=(make_batch, keys, self._queue, self._stop),
            name='vae_jax-prefetch', daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _Done):
            self.close()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self):
        """Stops the thread; further ``next`` calls raise StopIteration."""
        self._finished = True
        self._stop.set()
        while True:  # Unblock a producer waiting on a full queue.
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __del__(self):
        self.close()


def _prefetched(make_batch, keys, prefetch):
    if prefetch <= 0:
        return (make_batch(key) for key in keys)
    return _Prefetcher(make_batch, keys, prefetch)
