"""A train state's initialisation under one `jit` (`steps.create_train_state`) against flax's
and optax's eager init (one small program per initializer op), in fresh processes.

    python benchmarks/init_speed.py                          # vae, beta_vae, hvae, vdvae; 3 rounds
    python benchmarks/init_speed.py --models beta_vae --rounds 5

Each round starts one process per (model, form), alternating which form goes first; every
process imports vae_jax, builds the experiment's model (its `quick` config where it has one),
then times the initialisation alone, blocking on the result. The first round fills the
persistent compilation cache (one cache folder for the whole benchmark, as a machine's runs
share one) and is reported apart. Both forms' parameters and optimizer state are compared leaf
by leaf: they must be bit-identical.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMS = ('jit', 'eager')


def child(form: str, name: str, out: str) -> None:
    """Initialises experiment `name`'s model in `form` and prints its time; saves the leaves."""
    import importlib
    import time

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vae_jax import model_fns, steps
    from vae_jax.optim import make_optimizer

    module = importlib.import_module(f'experiments.{name}')
    args = getattr(module, 'ARGS', {})
    c = module.get_config('quick' if 'quick' in args else None)
    shape = (64, 64, 1) if c.data.name == 'dsprites' else (28, 28, 1)
    fns = model_fns.build(c.model, shape, 10)
    tx = make_optimizer(c.optim, 1000)
    key = jax.random.key(0)
    start = time.perf_counter()
    if form == 'jit':
        state = steps.create_train_state(key, fns, tx, shape)
    else:
        y = jnp.zeros((1,), jnp.int32) if fns.conditional else None
        params = fns.module.init(key, jnp.zeros((1, *shape)), y)['params']
        state = steps.TrainState.create(apply_fn=fns.module.apply, params=params, tx=tx)
    leaves = jax.block_until_ready(jax.tree.leaves(state))
    print(f'seconds {time.perf_counter() - start:.4f}')
    np.savez(out, *[np.asarray(leaf) for leaf in leaves])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='vae,beta_vae,hvae,vdvae',
                        help='experiments/NAME.py configs')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    import numpy as np

    names = args.models.split(',')
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, VAE_JAX_CACHE=tmp)
        times = {(n, f): [] for n in names for f in FORMS}
        for r in range(args.rounds):
            for name in names:
                for form in (FORMS if r % 2 == 0 else FORMS[::-1]):
                    out = f'{tmp}/{name}_{form}.npz'
                    proc = subprocess.run([sys.executable, __file__, '--child', form, name, out],
                                          env=env, capture_output=True, text=True)
                    if proc.returncode:
                        sys.exit(f'error: {name} ({form}) failed:\n{proc.stderr}')
                    seconds = float(proc.stdout.split('seconds ')[-1])
                    times[name, form].append(seconds)
                with np.load(f'{tmp}/{name}_jit.npz') as jit, \
                        np.load(f'{tmp}/{name}_eager.npz') as eager:
                    same = jit.files == eager.files and all(
                        np.array_equal(jit[k], eager[k]) and jit[k].dtype == eager[k].dtype
                        for k in jit.files)
                if not same:
                    sys.exit(f'error: {name}: the jitted and eager initialisations differ')
    print(f'init of a train state, fresh processes, {args.rounds} rounds (the first fills the '
          f'compilation cache); {os.cpu_count()} cores; values bit-identical in every round')
    print('| model | jit, first round s | eager, first round s | jit s (median of the rest) '
          '| eager s | eager / jit |')
    print('|---|---|---|---|---|---|')
    for name in names:
        jit, eager = times[name, 'jit'], times[name, 'eager']
        warm_jit = statistics.median(jit[1:] or jit)
        warm_eager = statistics.median(eager[1:] or eager)
        print(f'| {name} | {jit[0]:.2f} | {eager[0]:.2f} | {warm_jit:.2f} '
              f'({min(jit[1:] or jit):.2f}-{max(jit[1:] or jit):.2f}) | {warm_eager:.2f} '
              f'({min(eager[1:] or eager):.2f}-{max(eager[1:] or eager):.2f}) '
              f'| {warm_eager / warm_jit:.2f}x |')


if __name__ == '__main__':
    main()
