"""What the XLA flags vae_jax sets do to the train step: its own (`vae_jax.xla_setup.CPU_FLAGS`,
every process) and an experiment config's `xla_cpu_flags` (the processes that run it).

    python benchmarks/xla_flags.py                 # mlp and conv, 3 alternating rounds (~4 min)
    python benchmarks/xla_flags.py --models conv --rounds 5
    python benchmarks/xla_flags.py --models mlp,hvae,vdvae --flags=CONFIG_FLAGS_OF_ANOTHER_MODEL

Each (model, flags) measurement is a fresh process (XLA reads its flags once, when it starts):
the experiment's real pmapped train step (`train_speed.JaxRunner`), batches on device, timed in
blocks after compilation, under three settings, in an order that rotates every round:
none (`VAE_JAX_XLA_FLAGS=0`), vae_jax's own, and those plus the config's (what launch.py
runs; the same as vae_jax's own when the config has none). `--flags` times other flags in the
third setting instead: how a config's flags were chosen. Prints ms per step (median over
rounds, min-max) and the ratios.
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

# One measurement, run in its own process: prints {"ms": [per-block ms per step], "flags": ...}.
CHILD = '''
import json, os, sys, time
sys.path.insert(0, {here!r})
import train_speed as T
from vae_jax import xla_setup
if {extra!r} is not None:
    xla_setup.apply_config_flags({extra!r})
name = {name!r}
filename, shape, _ = T.MODELS[name]
config = T.load_config(filename)
runner = T.JaxRunner(config, shape, T.host_batches(config.batch_size, shape))
runner.run(3)
n = T.block_size(runner.run, 1.5)
blocks = []
for _ in range(3):
    t0 = time.perf_counter(); runner.run(n); blocks.append((time.perf_counter() - t0) / n * 1e3)
print(json.dumps({{"ms": blocks, "flags": os.environ.get("XLA_FLAGS", "")}}))
'''

SETTINGS = ('none', 'vae_jax', 'config')


def measure(name: str, setting: str, extra: str) -> float:
    """Min ms per step under `setting`, after checking that the child's XLA_FLAGS are it."""
    # This process imported vae_jax, which added its flags to its own XLA_FLAGS: the child's
    # environment is rebuilt from the user's flags alone.
    from vae_jax.xla_setup import CPU_FLAGS, merge_flags
    user = [f for f in os.environ.get('XLA_FLAGS', '').split() if f not in CPU_FLAGS]
    env = dict(os.environ, VAE_JAX_XLA_FLAGS='0' if setting == 'none' else '1',
               XLA_FLAGS=' '.join(user))
    code = CHILD.format(here=str(HERE), name=name, extra=extra if setting == 'config' else None)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    ran = result['flags'].split()
    ours = ' '.join(CPU_FLAGS)
    wanted = {'none': '', 'vae_jax': ours, 'config': merge_flags(ours, extra, set())}[setting]
    assert ran[len(user):] == wanted.split(), (setting, result['flags'])
    return min(result['ms'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='mlp,conv')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--flags', default=None, help="the third setting's flags (default: "
                        "each model's config's xla_cpu_flags)")
    args = parser.parse_args()
    import train_speed as T
    from vae_jax.xla_setup import CPU_FLAGS
    print(f'vae_jax\'s own flags: {" ".join(CPU_FLAGS)}\n')
    print('| model | third setting\'s flags | ms/step: none | vae_jax\'s | + config\'s | none / '
          'vae_jax\'s | vae_jax\'s / + config\'s |\n|---|---|---|---|---|---|---|')
    for name in args.models.split(','):
        extra = T.config_flags(name) if args.flags is None else args.flags
        ms = {s: [] for s in SETTINGS}
        for r in range(args.rounds):
            for setting in SETTINGS[r % 3:] + SETTINGS[:r % 3]:
                wait_for_idle(15)
                ms[setting].append(measure(name, setting, extra))
        med = {s: statistics.median(v) for s, v in ms.items()}
        cells = ' | '.join(f'{med[s]:.1f} ({min(ms[s]):.1f}-{max(ms[s]):.1f})' for s in SETTINGS)
        print(f'| {name} | {extra or "(none)"} | {cells} | {med["none"] / med["vae_jax"]:.2f}× | '
              f'{med["vae_jax"] / med["config"]:.2f}× |', flush=True)

if __name__ == '__main__':
    main()
