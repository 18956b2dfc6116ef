"""Vmapped sweep vs the same points run one after another: throughput on this machine.

For each small config, 8 points (β ∈ {0.5, 1, 2, 4} × seeds {0, 1}) are trained twice through
the real entry point (`run_sweep`): sequentially (8 × `train_and_evaluate`, each compiling its
own step) and vmapped (one program). Both write checkpoints, metrics and evals as usual.
Reported: wall time of each (compiles, data, evals and checkpoints included), point-steps per
second, and their ratio.

    python benchmarks/vmapped_sweep.py [--steps 1000] [--configs toy2d,mnist_mlp]

Needs the TFDS data_dir for mnist ($TFDS_DATA_DIR or ../shared/data/tfds).
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))
os.environ.setdefault('TFDS_DATA_DIR', str(ROOT.parent / 'shared' / 'data' / 'tfds'))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from timing import busy_cpu_s, load_warning  # noqa: E402
from vae_jax.sweep import expand, product, run_sweep, sweep  # noqa: E402

POINTS = expand(product(sweep('objective.beta', [0.5, 1.0, 2.0, 4.0]), sweep('seed', [0, 1])))


def _experiment(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'experiments' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def small_config(name, steps):
    if name == 'toy2d':
        c = _experiment('toy2d')
        c.data.toy_examples = 20_000
    else:  # 'mnist_mlp': the flax-example VAE, narrowed
        c = _experiment('vae')
        c.model.hidden = (128,)
        c.model.latents = 10
        c.batch_size = 64
    c.num_steps = steps
    c.log_every = c.eval_every = c.checkpoint_every = steps // 2
    c.eval_examples = 1000
    return c


def timed_sweep(config, root, vmap):
    machine0, own0 = busy_cpu_s()
    t0 = time.perf_counter()
    outcomes = run_sweep(config, POINTS, root, vmap=vmap)
    wall = time.perf_counter() - t0
    machine1, own1 = busy_cpu_s()
    assert all(o.status == 'done' for o in outcomes), [o.error for o in outcomes]
    other = max(0.0, (machine1 - machine0) - (own1 - own0)) / wall if machine0 else 0.0
    return wall, other


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=1000)
    parser.add_argument('--configs', default='toy2d,mnist_mlp')
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    print(f'{jax.devices()[0].platform}, {os.cpu_count()} cores; {len(POINTS)} points '
          f'(beta x seed) of {args.steps} steps each, through run_sweep with checkpoints/evals')
    print('| config | sequential (s) | vmapped (s) | point-steps/s seq | point-steps/s vmap '
          '| ratio |')
    print('|---|---|---|---|---|---|')
    loads = []
    for name in args.configs.split(','):
        config = small_config(name, args.steps)
        with tempfile.TemporaryDirectory() as tmp:
            seq, load_s = timed_sweep(config, Path(tmp) / 'seq', vmap=False)
            vm, load_v = timed_sweep(config, Path(tmp) / 'vmap', vmap=True)
        loads += [load_s, load_v]
        work = len(POINTS) * args.steps
        print(f'| {name} | {seq:.1f} | {vm:.1f} | {work / seq:.0f} | {work / vm:.0f} '
              f'| {seq / vm:.2f}x |')
    warning = load_warning(loads)
    if warning:
        print(warning)
    print('target: ratio >= 1.5 on a 2-core CPU')


if __name__ == '__main__':
    np.set_printoptions(precision=3)
    main()
