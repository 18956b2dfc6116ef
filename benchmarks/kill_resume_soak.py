"""Kill-and-resume soak: a run killed N times at random moments ends as if never interrupted.

    python benchmarks/kill_resume_soak.py                     # 20 signals to a toy 2-D run
    python benchmarks/kill_resume_soak.py --kills 30 --vmap   # a vmapped sweep group of 3
    python benchmarks/kill_resume_soak.py --sigterm 0.25      # a quarter of them SIGTERM

Trains the reference once without interruption, then the same command again and again in a
second workdir, sending each launch SIGKILL (or SIGTERM) after a random delay, until N signals
have landed on a training process; then lets it finish. Checkpoints are written every 10 steps
(every few tens of ms), so many kills land while orbax is writing one: those are counted from
the `*.orbax-checkpoint-tmp*` directory a kill leaves. At the end it checks, for every point:
the final checkpoint equals the reference's bit for bit, and metrics.jsonl and the TensorBoard
events (read back with TensorBoard's purge rule) hold every logged step once.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

ARGS = ['--config.num_steps=6000', '--config.checkpoint_every=10', '--config.log_every=50',
        '--config.eval_every=500', '--config.keep_checkpoints=2', '--config.batch_size=64']


def command(workdir: Path, vmap: bool) -> list[str]:
    config = ['--config=experiments/toy2d.py:seeds=1', '--sweep', '--sweep_vmap'] if vmap else [
        '--config=experiments/toy2d.py']
    return [sys.executable, str(REPO / 'launch.py'), *config, *ARGS, f'--workdir={workdir}']


def run_dirs(root: Path, vmap: bool) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if vmap else [root]


def has_tmp_checkpoint(root: Path) -> bool:
    return any('orbax-checkpoint-tmp' in p.name for p in root.rglob('*'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kills', type=int, default=20)
    parser.add_argument('--sigterm', type=float, default=0.0, help='fraction sent as SIGTERM')
    parser.add_argument('--vmap', action='store_true', help='a vmapped sweep group of 3 points')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--root', default='runs/soak')
    a = parser.parse_args()
    rng = random.Random(a.seed)
    root = Path(a.root).absolute() / ('vmap' if a.vmap else 'plain')
    if root.exists():
        sys.exit(f'error: {root} exists; remove it or pass another --root')
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')

    t0 = time.perf_counter()
    subprocess.run(command(root / 'reference', a.vmap), env=env, check=True,
                   capture_output=True)
    reference_s = time.perf_counter() - t0
    print(f'reference: {reference_s:.1f} s')

    soak = root / 'soak'
    landed = during_save = sigterms = launches = 0
    while landed < a.kills:
        launches += 1
        proc = subprocess.Popen(command(soak, a.vmap), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        # Start-up (imports, data, restore, compilation) takes about 3.5 s here: some kills
        # land during it, most during training, many of those during a save.
        time.sleep(rng.uniform(2.5, 7.0))
        term = rng.random() < a.sigterm
        if proc.poll() is not None:  # finished before the signal: start the count again
            print(f'launch {launches}: finished before its signal (exit {proc.returncode})')
            break
        proc.send_signal(signal.SIGTERM if term else signal.SIGKILL)
        _, err = proc.communicate()
        landed += 1
        sigterms += term
        in_save = (not term) and has_tmp_checkpoint(soak)
        during_save += in_save
        stopped = [l for l in err.splitlines() if 'stopped by SIGTERM' in l]
        print(f'launch {launches}: {"SIGTERM" if term else "SIGKILL"} -> exit {proc.returncode}'
              f'{" (during a checkpoint save)" if in_save else ""}'
              f'{" " + stopped[0].split("] ")[-1] if stopped else ""}')
    final = subprocess.run(command(soak, a.vmap), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-3000:]

    import numpy as np
    import jax
    from test_reliability import read_metrics, tensorboard_scalars
    from vae_jax.checkpoints import checksum
    from vae_jax.run import load_run
    identical = logs_ok = 0
    points = list(zip(run_dirs(soak, a.vmap), run_dirs(root / 'reference', a.vmap)))
    for mine, ref in points:
        x, y = load_run(mine).state, load_run(ref).state
        same = checksum(x) == checksum(y) and all(
            np.array_equal(u, v) for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
        identical += same
        rows, bad = read_metrics(mine / 'metrics.jsonl')
        keys = [(r['step'], r['split']) for r in rows]
        tb = tensorboard_scalars(mine)
        once = bad == 0 and len(keys) == len(set(keys)) and all(
            steps == [r['step'] for r in rows if r['split'] == tag.split('/')[0]]
            for tag, steps in tb.items())
        logs_ok += once
    history = [json.loads(l) for l in (run_dirs(soak, a.vmap)[0] / 'history.jsonl')
               .read_text().splitlines()]
    print(f'resumed from steps: {[h["start_step"] for h in history]}')
    print()
    print('| run | signals | SIGKILL during a save | SIGTERM | launches | bit-identical points '
          '| logs: every step once |')
    print('|---|---|---|---|---|---|---|')
    print(f'| {"vmapped group of 3" if a.vmap else "toy 2-D, 6000 steps"} | {landed} | '
          f'{during_save} | {sigterms} | {launches + 1} | {identical}/{len(points)} | '
          f'{logs_ok}/{len(points)} |')
    print(f'wall time {time.perf_counter() - t0:.0f} s')
    sys.exit(0 if identical == logs_ok == len(points) else 1)


if __name__ == '__main__':
    main()
