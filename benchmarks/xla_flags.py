"""What the XLA flags vae_jax sets (`vae_jax.xla_setup.CPU_FLAGS`) do to the train step.

    python benchmarks/xla_flags.py                 # mlp and conv, 3 alternating rounds (~3 min)
    python benchmarks/xla_flags.py --models conv --rounds 5

Each (model, flags) measurement is a fresh process (XLA reads its flags once, when it starts):
the experiment's real pmapped train step (`train_speed.JaxRunner`), batches on device, timed in
blocks after compilation; with vae_jax's flags (the default) and without
(`VAE_JAX_XLA_FLAGS=0`), alternating who goes first every round. Prints ms per step (median
over rounds, min-max) and the ratio.
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

# One measurement, run in its own process: prints {"ms": [per-block ms per step]}.
CHILD = '''
import json, sys, time
sys.path.insert(0, {here!r})
import train_speed as T
name = {name!r}
filename, shape, _ = T.MODELS[name]
config = T.load_config(filename)
runner = T.JaxRunner(config, shape, T.host_batches(config.batch_size, shape))
runner.run(3)
import os
assert ({flag!r} in os.environ.get('XLA_FLAGS', '').split()) == {on!r}, os.environ.get('XLA_FLAGS')
n = T.block_size(runner.run, 1.5)
blocks = []
for _ in range(3):
    t0 = time.perf_counter(); runner.run(n); blocks.append((time.perf_counter() - t0) / n * 1e3)
print(json.dumps({{"ms": blocks}}))
'''


def measure(name: str, flags_on: bool, cpu_flags: tuple) -> float:
    # This process imported vae_jax, which added the flags to its own XLA_FLAGS: the child's
    # environment is rebuilt from the user's flags alone.
    user = [f for f in os.environ.get('XLA_FLAGS', '').split() if f not in cpu_flags]
    env = dict(os.environ, VAE_JAX_XLA_FLAGS='1' if flags_on else '0', XLA_FLAGS=' '.join(user))
    out = subprocess.run([sys.executable, '-c', CHILD.format(here=str(HERE), name=name, flag=cpu_flags[0], on=flags_on)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return min(json.loads(out.strip().splitlines()[-1])['ms'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='mlp,conv')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    from vae_jax.xla_setup import CPU_FLAGS
    print(f'flags: {" ".join(CPU_FLAGS)}\n')
    print('| model | ms/step without | ms/step with | without / with |\n|---|---|---|---|')
    for name in args.models.split(','):
        ms = {False: [], True: []}
        for r in range(args.rounds):
            for on in ((True, False) if r % 2 else (False, True)):
                wait_for_idle(15)
                ms[on].append(measure(name, on, CPU_FLAGS))
        off, on = statistics.median(ms[False]), statistics.median(ms[True])
        print(f'| {name} | {off:.1f} ({min(ms[False]):.1f}-{max(ms[False]):.1f}) | {on:.1f} '
              f'({min(ms[True]):.1f}-{max(ms[True]):.1f}) | {off / on:.2f}× |', flush=True)


if __name__ == '__main__':
    main()
