"""How far the same run drifts on another device count: 1 vs N (fake CPU) devices.

    python benchmarks/device_count_drift.py                      # β-VAE quick, 600 steps
    python benchmarks/device_count_drift.py --config=experiments/toy2d.py --steps=2000

Trains the config twice through launch.py, on 1 and on `--devices` (default 2) devices (the same global batch, the
same keys: every example draws the same numbers), checkpointing every `--every` steps, and
prints, at each checkpoint, the relative difference of the parameters ‖a − b‖ / ‖b‖ and the
largest element-wise relative difference. The first step agrees to float rounding (the sums of
a pmean are ordered differently); the difference then grows as any float32 training amplifies
rounding. (On a 2-core machine, 4 fake devices can starve XLA:CPU's all-reduce rendezvous in
the conv model, which then aborts after 40 s: hence 2 by default.)
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train(config: str, workdir: Path, devices: int, steps: int, every: int) -> None:
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    subprocess.run([sys.executable, str(REPO / 'launch.py'), f'--config={config}',
                    f'--workdir={workdir}', f'--config.num_steps={steps}',
                    f'--config.checkpoint_every={every}', f'--config.keep_checkpoints={steps}',
                    f'--config.eval_every={steps}', '--config.disentanglement.metrics=()'],
                   env=env, check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='experiments/beta_vae.py:quick')
    parser.add_argument('--steps', type=int, default=600)
    parser.add_argument('--every', type=int, default=100)
    parser.add_argument('--devices', type=int, default=2)
    parser.add_argument('--root', default='runs/drift')
    a = parser.parse_args()
    root = Path(a.root).absolute()
    for n in (1, a.devices):
        if (root / f'devices{n}').exists():
            sys.exit(f'error: {root / f"devices{n}"} exists; remove it or pass another --root')
    for n in (1, a.devices):
        train(a.config, root / f'devices{n}', n, a.steps, a.every)

    import jax
    from vae_jax.run import load_run
    print(f'{a.config}: parameters on {a.devices} devices vs 1 device (same global batch)')
    print('| step | ‖a − b‖ / ‖b‖ | max element-wise relative |')
    print('|---|---|---|')
    for step in range(a.every, a.steps + 1, a.every):
        x = jax.tree.leaves(load_run(root / f'devices{a.devices}', step).params)
        y = jax.tree.leaves(load_run(root / 'devices1', step).params)
        diff = np.sqrt(sum(np.sum((np.float64(u) - v) ** 2) for u, v in zip(x, y)))
        norm = np.sqrt(sum(np.sum(np.float64(v) ** 2) for v in y))
        worst = max(np.max(np.abs(np.float64(u) - v) / (np.abs(v) + 1e-6)) for u, v in zip(x, y))
        print(f'| {step} | {diff / norm:.2e} | {worst:.2e} |')


if __name__ == '__main__':
    main()
