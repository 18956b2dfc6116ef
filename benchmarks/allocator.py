"""The train steps with and without `vae_jax.allocator.tune()` (glibc's malloc keeping freed
memory): ms per step, minor page faults and kernel CPU time per step.

    python benchmarks/allocator.py                  # conv and mlp, JAX and PyTorch, 3 rounds (~4 min)
    python benchmarks/allocator.py --models conv --rounds 5

Each measurement is a fresh process (the allocator's settings are per process), with
VAE_JAX_MALLOC=1 (what importing vae_jax does) or 0 (glibc's defaults), the two alternating
within each round: the experiment's real pmapped train step (`train_speed.JaxRunner`, with the
config's XLA flags, as launch.py sets them) and the PyTorch reference of the same model
(`train_speed.TorchRunner`), which allocates through the same malloc. Medians over rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import wait_for_idle  # noqa: E402

CHILD = '''
import json, os, resource, sys, time
sys.path.insert(0, {here!r})
import train_speed as T
from vae_jax import xla_setup
name, framework = {name!r}, {framework!r}
xla_setup.apply_config_flags(T.config_flags(name))  # as launch.py does, before JAX starts
filename, shape, _ = T.MODELS[name]
config = T.load_config(filename)
batches = T.host_batches(config.batch_size, shape)
if framework == 'jax':
    runner = T.JaxRunner(config, shape, batches, k=1)  # one step per call: faults per step
else:
    runner = T.TorchRunner(config, name, batches)
runner.run(5)
n = 3
while True:  # a block of at least 2 s
    t = time.perf_counter(); runner.run(n); dt = time.perf_counter() - t
    if dt > 0.5:
        n = max(3, int(n * 2.0 / dt)); break
    n *= 2
faults0, sys0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, os.times()[1], time.perf_counter()
runner.run(n)
dt = time.perf_counter() - t0
print(json.dumps({{'ms': 1e3 * dt / n, 'faults': (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / n,
                  'sys_ms': 1e3 * (os.times()[1] - sys0) / n}}))
'''


def measure(name, framework, tuned):
    env = dict(os.environ, VAE_JAX_MALLOC='1' if tuned else '0')
    out = subprocess.run([sys.executable, '-c', CHILD.format(here=str(HERE), name=name,
                                                             framework=framework)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='conv,mlp')
    parser.add_argument('--frameworks', default='jax,torch')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    print(f'{args.rounds} rounds; each cell a fresh process; medians')
    print('\n| model | framework | malloc | ms per step | min-max | page faults per step |'
          ' kernel CPU ms per step | speed-up |')
    print('|---|---|---|---|---|---|---|---|')
    for name in args.models.split(','):
        for framework in args.frameworks.split(','):
            runs = {True: [], False: []}
            for r in range(args.rounds):
                for tuned in ((True, False) if r % 2 == 0 else (False, True)):
                    wait_for_idle(10)
                    runs[tuned].append(measure(name, framework, tuned))
            med = {t: {k: statistics.median(x[k] for x in v) for k in v[0]}
                   for t, v in runs.items()}
            for tuned, label in ((False, "glibc's default"), (True, 'vae_jax (tuned)')):
                ms = [x['ms'] for x in runs[tuned]]
                print(f"| {name} | {framework} | {label} | {med[tuned]['ms']:.1f} | "
                      f"{min(ms):.1f}-{max(ms):.1f} | {med[tuned]['faults']:.0f} | "
                      f"{med[tuned]['sys_ms']:.1f} | "
                      + (f"{med[False]['ms'] / med[True]['ms']:.2f}× |" if tuned else ' |'),
                      flush=True)


if __name__ == '__main__':
    main()
