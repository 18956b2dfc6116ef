"""Vmapped sweep vs the same points run one after another: throughput on this machine.

For each small config, 8 points (β ∈ {0.5, 1, 2, 4} × seeds {0, 1}) are trained twice through
the real entry point (`run_sweep`): sequentially (8 × `train_and_evaluate`, each compiling its
own step) and vmapped (one program). Both write checkpoints, metrics and evals as usual.
Reported: wall time of each (compiles, data, evals and checkpoints included), point-steps per
second, and their ratio: medians over rounds in which the two alternate (which runs first swaps
each round), with the range over rounds as the noise.

    python benchmarks/vmapped_sweep.py [--steps 1000] [--configs toy2d,mnist_mlp] [--rounds_sweep 3]
    python benchmarks/vmapped_sweep.py --step_only [--rounds 100]   # the compiled step alone,
                                                    # also for the dSprites conv β-VAE

Needs the TFDS data_dir for mnist ($TFDS_DATA_DIR or ../shared/data/tfds).
"""

import argparse
import importlib.util
import os
import statistics
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
    elif name == 'dsprites_conv':  # beta_vae.py:quick, only for --step_only
        c = _experiment('beta_vae')
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


def step_throughput(config, rounds):
    """Point-steps/s of the compiled steps alone (one batch on device, no data, eval or I/O):
    the 8 points one after another with the single-run step, and stacked in the group step."""
    from vae_jax import model_fns, steps
    from vae_jax.data.registry import make_sources
    from vae_jax.keys import INIT, TRAIN, run_keys
    from vae_jax.points import Points
    from vae_jax.sweep.runner import apply_overrides

    configs = [apply_overrides(config, p.overrides) for p in POINTS]
    source, _ = make_sources(config.data, config.seed)
    shape = source.example_shape
    fns = model_fns.build(config.model, shape, source.num_classes)
    devices = jax.local_devices()[:1]
    states = [steps.init_train_state(run_keys(c.seed)[INIT], fns, c, shape, 1000)
              for c in configs]
    batch = source.get_batch(np.arange(config.batch_size))
    batch = jax.device_put({'image': batch['image'][None], 'label': batch['label'][None],
                            'index': np.arange(config.batch_size, dtype=np.int32)[None]})
    keys = [run_keys(c.seed)[TRAIN] for c in configs]

    group_points = Points(configs, vmapped=True)
    hparams = [steps.hyperparams(c) for c in configs]
    single, _ = steps.pmapped_steps(fns, config, devices)
    rstates = [steps.replicate(s, devices) for s in states]

    def sequential(n):
        for _ in range(n):
            for p in range(len(configs)):
                rstates[p], _ = single(rstates[p], batch, keys[p], hparams[p])
        jax.block_until_ready(rstates)

    group, _ = steps.pmapped_steps(fns, config, devices, vmapped=True)
    stacked = {'state': steps.replicate(group_points.join(states), devices)}
    group_batch = jax.tree.map(lambda x: np.stack([x] * len(configs), axis=1), batch)
    group_keys = jax.numpy.stack(keys)
    group_hparams = group_points.hparams()

    def grouped(n):
        for _ in range(n):
            stacked['state'], _ = group(stacked['state'], group_batch, group_keys, group_hparams)
        jax.block_until_ready(stacked['state'])

    rates = []
    for run in (sequential, grouped):
        run(1)  # compile
        t0 = time.perf_counter()
        run(rounds)
        rates.append(rounds * len(configs) / (time.perf_counter() - t0))
    return rates


def main_step_only(args):
    print(f'{jax.devices()[0].platform}, {os.cpu_count()} cores; the compiled train step alone, '
          f'{len(POINTS)} points, {args.rounds} rounds')
    print('| config | point-steps/s one by one | point-steps/s vmapped | ratio |')
    print('|---|---|---|---|')
    for name in args.configs.split(','):
        seq, vm = step_throughput(small_config(name, 1000), args.rounds)
        print(f'| {name} | {seq:.1f} | {vm:.1f} | {vm / seq:.2f}x |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=1000)
    parser.add_argument('--configs', default=None,
                        help='toy2d,mnist_mlp (default); --step_only also takes dsprites_conv')
    parser.add_argument('--step_only', action='store_true',
                        help='time the compiled steps alone instead of whole sweeps')
    parser.add_argument('--rounds', type=int, default=100, help='--step_only: steps timed')
    parser.add_argument('--rounds_sweep', type=int, default=3,
                        help='whole sweeps: rounds of (sequential, vmapped), order alternating')
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    if args.step_only:
        args.configs = args.configs or 'toy2d,mnist_mlp,dsprites_conv'
        return main_step_only(args)
    args.configs = args.configs or 'toy2d,mnist_mlp'
    print(f'{jax.devices()[0].platform}, {os.cpu_count()} cores; {len(POINTS)} points '
          f'(beta x seed) of {args.steps} steps each, through run_sweep with checkpoints/evals; '
          f'{args.rounds_sweep} rounds, the two orders alternating: medians (min-max)')
    print('| config | sequential (s) | vmapped (s) | point-steps/s seq | point-steps/s vmap '
          '| ratio (min-max over rounds) |')
    print('|---|---|---|---|---|---|')
    loads = []
    for name in args.configs.split(','):
        config = small_config(name, args.steps)
        walls = {False: [], True: []}
        for r in range(args.rounds_sweep):
            for vmap in ((False, True) if r % 2 == 0 else (True, False)):
                with tempfile.TemporaryDirectory() as tmp:
                    wall, load = timed_sweep(config, Path(tmp) / 'sweep', vmap=vmap)
                walls[vmap].append(wall)
                loads.append(load)
        seq, vm = statistics.median(walls[False]), statistics.median(walls[True])
        ratios = [s / v for s, v in zip(walls[False], walls[True])]
        work = len(POINTS) * args.steps
        span = lambda v: f'{min(v):.1f}-{max(v):.1f}'
        print(f'| {name} | {seq:.1f} ({span(walls[False])}) | {vm:.1f} ({span(walls[True])}) '
              f'| {work / seq:.0f} | {work / vm:.0f} | {seq / vm:.2f}x '
              f'({min(ratios):.2f}-{max(ratios):.2f}) |')
    warning = load_warning(loads)
    if warning:
        print(warning)
    print('target: ratio >= 1.5 on a 2-core CPU')


if __name__ == '__main__':
    np.set_printoptions(precision=3)
    main()
