"""How close the train steps run to this CPU's arithmetic peak, vae_jax's and PyTorch's.

    python benchmarks/roofline.py                 # mlp, conv: 5 rounds, ~2 minutes on 2 cores
    python benchmarks/roofline.py --quick         # 3 rounds of shorter blocks
    python benchmarks/roofline.py --models conv

The speed targets of `train_speed.py` are ratios to PyTorch; this script says how much room the
hardware leaves for them. For each model it prints:

- FLOPs per train step: XLA's count (`jax.jit(...).lower(...).cost_analysis()`, before XLA's
  optimisations) of the experiment's train step on one device, traced as on an accelerator,
  where vae_jax's layers are lax's own convolutions: the model's arithmetic, not the CPU
  formulation's (`vae_jax.convolution` computes the same multiply-adds). PyTorch's step does
  the same arithmetic: the same layers, loss and optimizer.
- Steps/s of both, timed as `train_speed.py` times them (alternating rounds, one process per
  model with its config's XLA flags), and the GFLOP/s that makes.
- The peak: float32 matrix multiplications, timed in the same process before and after the steps:
  a 2048×2048 square (`jnp.dot`) and the model's own largest layer as one matmul. "% of
  peak" is the step's GFLOP/s over the square's.

A step at the peak would run `peak / FLOPs` steps/s: the last column, as a multiple of
PyTorch's measured rate, is what a formulation running the step at the square's rate would
gain over it on this machine.
"""

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_speed as T  # noqa: E402
from timing import block_size, timed  # noqa: E402
from vae_jax import xla_setup  # noqa: E402

# The largest layer of each model as one matmul: (m, k, n) of [m, k] @ [k, n] at its batch.
# mlp: the 500 -> 784 output layer at batch 128; conv: the encoder's 32×32×32 -> 16×16×32
# convolution as the matmul of its patches (64·16·16 rows, 4·4·32 columns, 32 outputs).
LAYER_MATMUL = {'mlp': (128, 500, 784), 'conv': (64 * 16 * 16, 512, 32)}


def step_flops(name: str) -> float:
    """XLA's FLOP count of one train step of `name` (one device, lax's convolutions)."""
    import jax
    import jax.numpy as jnp

    from vae_jax import steps
    from vae_jax.model_fns import build
    from vae_jax.optim import make_optimizer

    filename, shape, _ = T.MODELS[name]
    config = T.load_config(filename)
    batch = {k: jnp.asarray(v) for k, v in T.host_batches(config.batch_size, shape)[0].items()}
    fns = build(config.model, shape, num_classes=10)
    tx = make_optimizer(config.optim, total_steps=1_000_000)
    state = steps.create_train_state(jax.random.key(0), fns, tx, shape)
    step = functools.partial(steps.train_step, fns=fns, objective_config=config.objective,
                             binarize=config.data.binarize, axis_name=None)
    # Traced as on an accelerator, where vae_jax's layers are lax's own convolutions: the
    # model's arithmetic, whatever formulation the CPU runs.
    with mock.patch.object(jax, 'default_backend', return_value='gpu'):
        cost = jax.jit(step).lower(state, batch, jax.random.key(1),
                                   steps.hyperparams(config)).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost['flops'])


def matmul_rate(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """GFLOP/s of a jitted float32 [m, k] @ [k, n]: the best of 3 blocks of ~`seconds`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.random((m, k), np.float32))
    b = jnp.asarray(rng.random((k, n), np.float32))
    f = jax.jit(jnp.dot)

    def run(calls):
        for _ in range(calls):
            out = f(a, b)
        jax.block_until_ready(out)

    run(1)  # compile
    calls = block_size(run, seconds)
    return 2 * m * k * n * max(timed(run, calls) for _ in range(3)) / 1e9


def measure_here(name: str, rounds: int, block_s: float) -> dict:
    """{'flops', 'rates': {framework: [steps/s]}, 'peak': [GFLOP/s], 'layer': [GFLOP/s],
    'load': [other cores]} of model `name`, in this process (its flags already set)."""
    flops = step_flops(name)
    peaks, layers = [matmul_rate(2048, 2048, 2048)], [matmul_rate(*LAYER_MATMUL[name])]
    rates, load, _, _ = T.benchmark(name, rounds, block_s)
    peaks.append(matmul_rate(2048, 2048, 2048))
    layers.append(matmul_rate(*LAYER_MATMUL[name]))
    return {'flops': flops, 'rates': rates, 'peak': peaks, 'layer': layers,
            'load': sum(load.values(), [])}


def measure_in_child(name: str, rounds: int, block_s: float) -> dict:
    """measure_here in a fresh process with the model's config flags (XLA reads them once)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'row.json'
        subprocess.run([sys.executable, __file__, '--models', name, '--rounds', str(rounds),
                        '--block_s', str(block_s), '--row_json', str(out)], check=True)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    T.add_timing_args(parser)
    parser.add_argument('--row_json', default=None, help=argparse.SUPPRESS)  # a child's output
    args = parser.parse_args()
    names, rounds, block_s = T.timing_choices(parser, args, LAYER_MATMUL)
    if args.row_json:
        (name,) = names
        xla_setup.apply_config_flags(T.config_flags(name))
        Path(args.row_json).write_text(json.dumps(measure_here(name, rounds, block_s)))
        return

    print(f'torch.get_num_threads() = {T.torch.get_num_threads()}, {rounds} rounds; each model '
          f'in a process with its config\'s XLA flags')
    rows = {name: measure_in_child(name, rounds, block_s) for name in names}
    print('\n| model | GFLOP per step (XLA) | matmul peak GFLOP/s (2048², its largest layer) '
          '| framework | steps/s | GFLOP/s | % of peak | steps/s at the peak, × PyTorch |')
    print('|---|---|---|---|---|---|---|---|')
    for name, row in rows.items():
        peak, layer = statistics.median(row['peak']), statistics.median(row['layer'])
        gflop = row['flops'] / 1e9
        torch_rate = statistics.median(row['rates']['torch'])
        for fw, rates in row['rates'].items():
            rate = statistics.median(rates)
            bound = (f'{peak / gflop:.0f}, {peak / gflop / torch_rate:.2f}×' if fw == 'jax'
                     else '')
            print(f'| {name} | {gflop:.3f} | {peak:.0f}, {layer:.0f} | {fw} | {rate:.1f} | '
                  f'{rate * gflop:.0f} | {rate * gflop / peak:.0%} | {bound} |')
    loads = [x for row in rows.values() for x in row['load']]
    if warning := T.load_warning(loads):
        print(warning)
    print('\nPeak: the median of the matmul rates timed before and after the steps, in the '
          'same process. PyTorch\'s GFLOP/s use XLA\'s count of the same step.')


if __name__ == '__main__':
    main()
