"""The train step with the optimizer update on [1, ...] leaves (`optim.apply_gradients`, what the
step does under pmap) against flax's `apply_gradients` on the body's [...] leaves.

    python benchmarks/optimizer_update.py                   # mlp, hvae: 5 rounds (~1 min)
    python benchmarks/optimizer_update.py --models mlp,vampprior --rounds 3
    python benchmarks/optimizer_update.py --models group:mlp      # a vmapped sweep group's step

For each model: the experiment's real pmapped train step on one device (`train_speed.JaxRunner`,
batches on device, compiled first), built twice, with `lead_axis` True and False; how many
parameter-sized arrays its compiled program copies (XLA `copy` instructions of f32 arrays of
at least 1,000 elements), and ms per step in alternating timed blocks (median over rounds,
min-max). `group:NAME` times a vmapped sweep group's step over 8 copies of the model
(`pmapped_steps(vmapped=True)`: the update's `custom_vmap` rule). Both run in this process,
with vae_jax's own XLA flags. Then how far apart the two
states are after 20 steps from the same start: the same operations, rounded differently by
XLA's generated loops.
"""

import argparse
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import train_speed as T  # noqa: E402
from timing import block_size, load_warning, timed, wait_for_idle  # noqa: E402
from vae_jax import steps  # noqa: E402

GROUP_POINTS = 8  # 'group:NAME': a sweep group of this many points
COPY = re.compile(r'= f32\[([\d,]*)\]\S* copy\(')


def parameter_copies(hlo_text: str, min_size: int = 1000) -> int:
    """How many f32 arrays of at least `min_size` elements a compiled program's text copies."""
    return sum(int(np.prod([int(d) for d in m.group(1).split(',') if d] or [1])) >= min_size
               for m in COPY.finditer(hlo_text))


class Runner(T.JaxRunner):
    """train_speed's runner of the experiment's step, with `lead_axis` fixed, one step per call
    (the update is what is compared)."""

    def __init__(self, config, shape, batches, lead_axis):
        self.step_fn = lambda *a, **k: steps.train_step(*a, **dict(k, lead_axis=lead_axis))
        super().__init__(config, shape, batches, step_fn=self.step_fn, k=1)

    def copies(self):
        lowered = self.step.lower(self.state, self.batches[0], self.key, self.hparams)
        return parameter_copies(lowered.compile().as_text())


class GroupRunner(Runner):
    """The same, as a vmapped sweep group's step over `points` copies of the point (each its
    own initialisation, key and learning rate): leaves [1, P, ...] on the device."""

    def __init__(self, config, shape, batches, lead_axis, points=GROUP_POINTS):
        super().__init__(config, shape, batches, lead_axis)
        devices = jax.local_devices()[:1]
        states = [steps.create_train_state(jax.random.key(p), self.fns, self.tx, shape)
                  for p in range(points)]  # one tx for all: the states stack
        self.state = steps.replicate(jax.tree.map(lambda *a: np.stack(a), *states), devices)
        self.step, _ = steps.pmapped_steps(self.fns, config, devices, step_fn=self.step_fn,
                                           vmapped=True)
        self.key = jax.random.split(jax.random.key(1), points)
        self.hparams = jax.tree.map(
            lambda v: np.asarray(v) * np.linspace(0.5, 2.0, points, dtype=np.float32)
            if v.dtype.kind == 'f' else np.stack([v] * points), steps.hyperparams(config))
        self.batches = [jax.tree.map(lambda a: jax.numpy.stack([a] * points, axis=1), b)
                        for b in self.batches]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='mlp,hvae')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--block_s', type=float, default=1.0)
    args = parser.parse_args()
    print(f'jax {jax.__version__}, {args.rounds} alternating rounds of ~{args.block_s} s blocks')
    rows, loads = [], []
    for name in args.models.split(','):
        cls = GroupRunner if name.startswith('group:') else Runner
        filename, shape, _ = T.MODELS[name.removeprefix('group:')]
        config = T.load_config(filename)
        batches = T.host_batches(config.batch_size, shape)
        runners = {lead: cls(config, shape, batches, lead) for lead in (True, False)}
        copies = {lead: r.copies() for lead, r in runners.items()}
        for r in runners.values():
            r.run(5)
        n = block_size(runners[False].run, args.block_s)
        ms = {lead: [] for lead in runners}
        for i in range(args.rounds):
            for lead in ((True, False) if i % 2 == 0 else (False, True)):
                wait_for_idle(10)
                ms[lead].append(1e3 / timed(runners[lead].run, n, loads))
        # The same start, 20 steps each: how far apart the rounding takes the states.
        fresh = {lead: cls(config, shape, batches, lead) for lead in (True, False)}
        for r in fresh.values():
            r.run(20)
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(fresh[True].state.params),
                                   jax.tree.leaves(fresh[False].state.params)))
        rows.append((name, copies, ms, diff))

    print('\n| model | update on | parameter copies | ms per step (median) | min-max | speed-up |'
          ' max abs param diff after 20 steps |')
    print('|---|---|---|---|---|---|---|')
    for name, copies, ms, diff in rows:
        med = {lead: statistics.median(v) for lead, v in ms.items()}
        for lead, label in ((False, '[...] (flax)'), (True, '[1, ...] (vae_jax)')):
            print(f'| {name} | {label} | {copies[lead]} | {med[lead]:.2f} | '
                  f'{min(ms[lead]):.2f}-{max(ms[lead]):.2f} | '
                  + (f'{med[False] / med[True]:.2f}× | {diff:.1e} |' if lead else ' | |'))
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
