"""Throughput of `train_batches`, to show the input pipeline keeps up with the train step.

    python benchmarks/input_pipeline.py [--data_dir ../shared/data/tfds] [--seconds 3]

Takes about 40 s on a 2-core CPU.

Prints batches/s and images/s with nothing consuming the batches but `next()`: the rate at
which the prefetch thread can supply one host with one device. "cold" is the first epoch of a
TFDS dataset, when every example is PNG-decoded once; "warm" is any later epoch, when a batch
is a numpy gather from the decoded cache. Compare ms/batch with the train step.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from vae_jax.data import DSpritesSource
from vae_jax.data import TfdsSource
from vae_jax.data import train_batches

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

    rows = []
    for name in ('mnist', 'binarized_mnist'):
        for batch in (64, 128):
            source = TfdsSource(name, 'train', data_dir=args.data_dir)
            per_epoch = source.num_examples // batch
            # The whole first epoch, so every example is decoded once.
            rows.append((name, batch, 'cold', measure(source, batch, 0, per_epoch - 1)))
            steps = min(per_epoch - 1, int(args.seconds * 2000 * 64 / batch))
            rows.append((name, batch, 'warm', measure(source, batch, per_epoch, steps)))
    for batch in (64, 128):
        steps = int(args.seconds * 2000 / batch * 4)
        rows.append(('dsprites', batch, 'render', measure(DSpritesSource(), batch, 0, steps)))

    print(f'{"dataset":<16}{"batch":>6}  {"cache":<7}{"batches/s":>10}{"images/s":>11}'
          f'{"ms/batch":>10}')
    for name, batch, cache, rate in rows:
        print(f'{name:<16}{batch:>6}  {cache:<7}{rate:>10.0f}{rate * batch:>11.0f}'
              f'{1e3 / rate:>10.2f}')


if __name__ == '__main__':
    main()
