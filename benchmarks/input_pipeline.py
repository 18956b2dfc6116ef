"""Throughput of `train_batches`, to show the input pipeline keeps up with the train step.

    python benchmarks/input_pipeline.py [--data_dir ../shared/data/tfds] [--seconds 3]

Takes about 30 s on a 2-core CPU.

Two tables. Loading a TFDS split: decoding all of it (what the first process on a machine
does; into a temporary cache folder) and reading it back from the per-machine cache (what every
later process does). Then batches/s and images/s with nothing consuming the batches but
`next()`: the rate at which the prefetch thread can supply one host with one device once the
split is loaded (a batch is a numpy gather). Compare ms/batch with the train step.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from vae_jax.data import DSpritesSource
from vae_jax.data import TfdsSource
from vae_jax.data import train_batches
from vae_jax.data import tfds_source

_DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'tfds'


def measure(source, global_batch, start_step, num_steps):
    """Returns batches/s over ``num_steps`` batches from ``start_step`` (after one warm-up)."""
    batches = train_batches(source, seed=0, global_batch=global_batch, start_step=start_step,
                            num_steps=num_steps + 1, local_device_count=1)
    next(batches)  # Thread start-up and, for dSprites, the first epoch permutation.
    t0 = time.perf_counter()
    for _ in batches:
        pass
    return num_steps / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default=os.environ.get('VAE_JAX_TFDS_DIR', _DEFAULT_DIR))
    parser.add_argument('--seconds', type=float, default=3.0, help='rough time per warm row')
    args = parser.parse_args()

    loads, rows = [], []
    with tempfile.TemporaryDirectory() as cache:
        os.environ['VAE_JAX_CACHE'] = cache  # a cold cache of this benchmark's own
        for name in ('mnist', 'binarized_mnist'):
            for how in ('decoded', 'from the cache'):
                tfds_source._SPLITS.clear()  # forget the split this process already holds
                source = TfdsSource(name, 'train', data_dir=args.data_dir)
                t0 = time.perf_counter()
                source.load()
                loads.append((name, source.num_examples, how, time.perf_counter() - t0))
            for batch in (64, 128):
                steps = min(source.num_examples // batch - 1,
                            int(args.seconds * 2000 * 64 / batch))
                rows.append((name, batch, 'gather', measure(source, batch, 0, steps)))
    for batch in (64, 128):
        steps = int(args.seconds * 2000 / batch * 4)
        rows.append(('dsprites', batch, 'render', measure(DSpritesSource(), batch, 0, steps)))

    print(f'{"dataset":<16}{"images":>7}  {"loaded":<15}{"seconds":>8}')
    for name, n, how, seconds in loads:
        print(f'{name:<16}{n:>7}  {how:<15}{seconds:>8.3f}')
    print()
    print(f'{"dataset":<16}{"batch":>6}  {"source":<7}{"batches/s":>10}{"images/s":>11}'
          f'{"ms/batch":>10}')
    for name, batch, cache, rate in rows:
        print(f'{name:<16}{batch:>6}  {cache:<7}{rate:>10.0f}{rate * batch:>11.0f}'
              f'{1e3 / rate:>10.2f}')


if __name__ == '__main__':
    main()
