"""Where a model's train step spends XLA:CPU's time, by kind of fused operation.

    python benchmarks/step_profile.py                        # the conv β-VAE, its config's flags
    python benchmarks/step_profile.py --models conv --no_config_flags
    python benchmarks/step_profile.py --models mlp,vdvae --steps 5

Traces `--steps` steps of the experiment's pmapped train step (`train_speed.JaxRunner`, after
warm-up) with `jax.profiler`, reads the trace back (`jax.profiler.ProfileData`) and sums the
time of each executed XLA operation over XLA:CPU's worker threads, grouped by its name less the
numeric suffix (`transpose_copy_fusion.5` -> `transpose_copy_fusion`). The total is CPU time
(both threads), not wall time. The process runs with the model's `config.xla_cpu_flags`, as
launch.py would, unless `--no_config_flags`; every model must then share those flags.

Then, with `--transposes`, the kind of copy that dominated the conv step without its flags: an
activation [64, 32, 32, 32] transposed to [32, 32, 32, 64] alone, and with the bias and ReLU
fused into the copy, each jitted and timed on its own.
"""

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_speed as T  # noqa: E402
from vae_jax import xla_setup  # noqa: E402


def profile(name: str, steps: int) -> dict[str, float]:
    """{operation kind: CPU ms per step} of `name`'s train step."""
    import jax
    filename, shape, _ = T.MODELS[name]
    config = T.load_config(filename)
    runner = T.JaxRunner(config, shape, T.host_batches(config.batch_size, shape))
    runner.run(5)
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        runner.run(steps)
        jax.profiler.stop_trace()
        (trace,) = Path(tmp).rglob('*.xplane.pb')
        data = jax.profiler.ProfileData.from_file(str(trace))
    ns = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if 'Eigen' not in line.name:  # XLA:CPU's worker threads run the operations
                continue
            for event in line.events:
                if not event.name.startswith('ThunkExecutor'):
                    ns[re.sub(r'\.\d+$', '', event.name)] += event.duration_ns
    return {kind: t / 1e6 / steps for kind, t in ns.most_common()}


def time_ms(f, x, n=50) -> float:
    import jax
    f = jax.jit(f)
    jax.block_until_ready(f(x))
    best = float('inf')
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            out = f(x)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / n * 1e3)
    return best


def transposes() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32, 32, 32)), jnp.float32)
    b = jnp.ones((32,))
    swap = lambda v: jnp.transpose(v, (3, 1, 2, 0))  # noqa: E731
    rows = [('transpose alone', lambda v: swap(v)),
            ('transpose of x * x (no broadcast)', lambda v: swap(v * v)),
            ('transpose of x * 2 (a broadcast scalar)', lambda v: swap(v * 2)),
            ('transpose of relu(x + bias)', lambda v: swap(jax.nn.relu(v + b)))]
    print('\n| [64, 32, 32, 32] -> [32, 32, 32, 64] | ms (best of 3 × 50) |\n|---|---|')
    for label, f in rows:
        print(f'| {label} | {time_ms(f, x):.2f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='conv')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--no_config_flags', action='store_true')
    parser.add_argument('--transposes', action='store_true')
    args = parser.parse_args()
    names = args.models.split(',')
    flags = {T.config_flags(n) for n in names}
    if not args.no_config_flags:
        if len(flags) > 1:
            parser.error(f'--models {args.models} have different config flags {sorted(flags)}: '
                         f'profile them one by one, or pass --no_config_flags')
        xla_setup.apply_config_flags(flags.pop())
    import os
    print(f'XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}')
    for name in names:
        ms = profile(name, args.steps)
        total = sum(ms.values())
        print(f'\n{name}: {total:.1f} ms of XLA:CPU time per step (both threads), {args.steps} '
              f'steps\n\n| operation kind | ms per step | share |\n|---|---|---|')
        for kind, t in list(ms.items())[:args.top]:
            print(f'| {kind} | {t:.2f} | {t / total:.0%} |')
    if args.transposes:
        transposes()


if __name__ == '__main__':
    main()
