"""Whole jobs, vae_jax against its peers: wall time, peak memory and the result, alternating.

    python3 -m venv ../pythae-venv && ../pythae-venv/bin/pip install pythae   # once, for `main`
    pip install -e '.[bench]'                                                # torch, for `beta_quick`
    python benchmarks/end_to_end.py                          # both jobs, 3 rounds (~12 min)
    python benchmarks/end_to_end.py --jobs=main --rounds=5 --pythae_python=PATH
    python benchmarks/end_to_end.py --jobs=main --steps_per_execution=1,10   # both, and Pythae

Two jobs, each run as a fresh process per round, the sides alternating (each goes first in
turn) after waiting for the machine to go quiet; `--steps_per_execution=1,10` makes one vae_jax
side per value, so that their ratios to the peer come from the same rounds:

- `main`: the README's main job, `python launch.py --config=experiments/vae.py:epochs=10`
  (flax-parity VAE, MLP 784-500-20, binarized MNIST 50k, batch 128, Adam 1e-3, 10 epochs,
  an eval, image grids each epoch, checkpoints), against Pythae's trainer on the same model,
  data, batch and optimizer (`benchmarks/pythae_parity.py --job`, in its own venv with pythae
  and torch: `--pythae_python`). Result: the test −ELBO of the final model (nats, 10k images).
- `beta_quick`: `python launch.py --config=experiments/beta_vae.py:quick` (600 steps of the
  Burgess et al. conv VAE on procedural dSprites, then the five disentanglement metrics),
  against a PyTorch loop of the same conv model, loss and optimizer
  (`benchmarks/torch_beta_vae.py`). Compared: the 600 steps (vae_jax: the first step and
  the train steps of its timings.jsonl, compilation apart; PyTorch: its loop less the time
  spent rendering batches, which vae_jax does in a background thread), and the whole vae_jax
  run is printed too.

The caches vae_jax keeps per machine (decoded data, compiled code; `vae_jax.cache`) are used as
they are: the numbers are those of a machine that has run the job before, once the first round
has filled them. `--cold` gives every vae_jax run an empty cache folder of its own instead, so
each decodes its data and compiles from scratch, as the first launch on a machine does.

This VM's kernel pages out memory left idle for about a minute (DAMON), and with it the
libraries an earlier round read: a side whose last run ended a minute or more ago then reads
its packages from disk again (vae_jax's start-up: 8-16 s instead of ~1 s), and which side
waited longer depends on how long the other ran. So before each timed run the side's packages
are imported once, untimed, in a throwaway process (`PREWARM`); `--no-prewarm` times the runs
as they come.

The VM's speed moves by the hour (a 2048² matmul ran at 205 GFLOP/s in one hour of 2026-12-03
and at 431 two hours later), and not equally for both sides: vae_jax's jobs spend most of
their time in XLA's arithmetic, the peers' more in the Python interpreter. So each round
starts with `machine_speed()` in a throwaway process: that matmul's GFLOP/s
(`roofline.matmul_rate`) and a plain Python loop's rate (`timing.python_rate`), printed with
the round's ratio so that runs of different hours can be told apart (`--no-machine_speed`
skips it).

Wall time is the process's, from start to exit (Python start-up and imports included); peak
memory is the process's maximum resident set (`os.wait4`). Each vae_jax run's phases are its
timings.jsonl's, plus `exit`: the wall time less the logged total (Python's shutdown). The
ratio is peer / vae_jax per round, summarised by the median; the spread over rounds is the
noise.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import wait_for_idle  # noqa: E402

DATA = ROOT.parent / 'shared' / 'data' / 'tfds'

# What each side's job imports (and, for vae_jax, JAX's CPU backend started): run untimed before
# each timed run, so that both start with their libraries in memory.
PREWARM = {
    'vae_jax': ('import jax, launch, orbax.checkpoint, tensorflow_datasets, vae_jax.train; '
                'jax.devices()'),
    'main': 'import torch, pythae.models, pythae.pipelines, pythae.trainers',
    'beta_quick': 'import torch',
}


def prewarm(python: str, code: str, env: dict) -> None:
    subprocess.run([python, '-c', code], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


MACHINE_SPEED = ('import json, roofline, timing; print(json.dumps({'
                 '"matmul_gflops": roofline.matmul_rate(2048, 2048, 2048), '
                 '"python_mloops": timing.python_rate()}))')


def machine_speed(env: dict) -> dict:
    """{'matmul_gflops', 'python_mloops'} of this machine now, measured in a fresh process."""
    out = subprocess.run([sys.executable, '-c', MACHINE_SPEED], cwd=ROOT / 'benchmarks', env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_process(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one process; raises if it fails."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}):\n'
                               f'{err.read()[-3000:]}')
        return seconds, usage.ru_maxrss / 1024, out.read()


def last_record(workdir: Path, split: str) -> dict:
    rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines() if l]
    return [r for r in rows if r.get('split') == split][-1]


def vae_jax_job(job: str, workdir: Path, env: dict, overrides=()) -> dict:
    config = {'main': 'experiments/vae.py:epochs=10',
              'beta_quick': 'experiments/beta_vae.py:quick'}[job]
    seconds, peak, _ = run_process([sys.executable, 'launch.py', f'--config={config}',
                                    f'--workdir={workdir}', *overrides], env)
    times = json.loads((workdir / 'timings.jsonl').read_text().splitlines()[-1])['seconds']
    times['exit'] = seconds - times['total']  # after the last log line: Python's shutdown
    result = last_record(workdir, 'eval')['neg_elbo']
    out = {'wall_s': seconds, 'peak_mib': peak, 'neg_elbo': result, 'phases': times}
    if job == 'beta_quick':  # the steps themselves, compilation apart (as PyTorch has none)
        out['train_s'] = times['first_step'] + times['train_steps']
    return out


def peer_job(job: str, args, env: dict) -> dict:
    if job == 'main':
        cmd = [args.pythae_python, 'benchmarks/pythae_parity.py', '--job']
    else:
        cmd = [sys.executable, 'benchmarks/torch_beta_vae.py']
    seconds, peak, out = run_process(cmd, env)
    report = json.loads(out.strip().splitlines()[-1])
    res = {'wall_s': seconds, 'peak_mib': peak, 'neg_elbo': report['neg_elbo'],
           'phases': report['seconds']}
    if job == 'beta_quick':  # vae_jax renders its batches in a background thread
        res['train_s'] = report['seconds']['train'] - report['seconds']['render_in_train']
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--jobs', default='main,beta_quick')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--cold', action='store_true',
                        help='an empty VAE_JAX_CACHE for every vae_jax run')
    parser.add_argument('--prewarm', action=argparse.BooleanOptionalAction, default=True,
                        help='import each side\'s packages, untimed, before its timed run')
    parser.add_argument('--machine_speed', action=argparse.BooleanOptionalAction, default=True,
                        help='time a matmul and a Python loop before each round')
    parser.add_argument('--steps_per_execution', default='',
                        help='comma-separated values of config.steps_per_execution, one vae_jax '
                             'side each (e.g. 1,10); empty: the config\'s own')
    parser.add_argument('--pythae_python', default=str(ROOT.parent / 'pythae-venv' / 'bin' / 'python'),
                        help='a Python with pythae and torch (never a vae_jax dependency)')
    args = parser.parse_args()
    if 'main' in args.jobs.split(',') and not Path(args.pythae_python).is_file():
        sys.exit(f'error: no Python with pythae at {args.pythae_python}; install one (see the '
                 f'docstring) or pass --pythae_python')
    env = dict(os.environ)
    env.setdefault('TFDS_DATA_DIR', str(DATA))
    ks = [int(k) for k in args.steps_per_execution.split(',') if k]
    ours = {f'vae_jax k={k}': [f'--config.steps_per_execution={k}'] for k in ks} or {'vae_jax': []}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.jobs.split(','):
            peer = 'Pythae 0.1.2' if job == 'main' else 'PyTorch loop'
            sides = [*ours, peer]
            rows = {side: [] for side in sides}
            speeds = []
            for r in range(args.rounds):  # each side goes first in turn
                if args.machine_speed:
                    wait_for_idle(20)
                    speeds.append(machine_speed(env))
                    print(f'{job} round {r} machine: {json.dumps(speeds[-1])}', flush=True)
                for i, side in enumerate(sides[r % len(sides):] + sides[:r % len(sides)]):
                    if args.prewarm:
                        prewarm(*((sys.executable, PREWARM['vae_jax']) if side in ours else
                                  (args.pythae_python if job == 'main' else sys.executable,
                                   PREWARM[job])), env)
                    wait_for_idle(20)
                    if side in ours:
                        run_env = (dict(env, VAE_JAX_CACHE=str(Path(tmp) / f'cache_{job}_{r}_{i}'))
                                   if args.cold else env)
                        rows[side].append(vae_jax_job(job, Path(tmp) / f'{job}_{r}_{i}', run_env,
                                                      ours[side]))
                    else:
                        rows[side].append(peer_job(job, args, env))
                    print(f'{job} round {r} {side}: {json.dumps(rows[side][-1])}', flush=True)
            results[job] = rows, speeds
    print()
    for job, (rows, speeds) in results.items():
        key = 'wall_s' if job == 'main' else 'train_s'
        peer = list(rows)[-1]
        print(f'### {job}: {"whole process" if job == "main" else "the 600 steps"} '
              f'({args.rounds} alternating rounds, {"cold" if args.cold else "warm"} caches, '
              f'{"packages imported before each run" if args.prewarm else "no prewarm"})\n')
        print('| side | wall s (median, min-max) | peak MiB | test −ELBO |'
              + (' training s |' if key == 'train_s' else '') + '\n|---|---|---|---|'
              + ('---|' if key == 'train_s' else ''))
        for name, rs in rows.items():
            w = [x['wall_s'] for x in rs]
            line = (f'| {name} | {statistics.median(w):.1f} ({min(w):.1f}-{max(w):.1f}) | '
                    f'{statistics.median(x["peak_mib"] for x in rs):.0f} | '
                    f'{statistics.median(x["neg_elbo"] for x in rs):.2f} |')
            if key == 'train_s':
                t = [x['train_s'] for x in rs]
                line += f' {statistics.median(t):.1f} ({min(t):.1f}-{max(t):.1f}) |'
            print(line)
        ratios = {side: [b[key] / a[key] for a, b in zip(rows[side], rows[peer])]
                  for side in ours}
        for side in ours:
            print(f'\n{peer} / {side} ({key}): median {statistics.median(ratios[side]):.2f}× '
                  f'(rounds: {", ".join(f"{x:.2f}" for x in ratios[side])})')
            print(f'{side} phases (median s): ' + ', '.join(
                f'{k} {statistics.median(x["phases"].get(k, 0.0) for x in rows[side]):.1f}'
                for k in rows[side][0]['phases']))
        if speeds:
            print('\n| round | matmul GFLOP/s | Python Mloops/s | '
                  + ' | '.join(f'{peer} / {side}' for side in ours) + ' |\n|---|---|---|'
                  + '---|' * len(ours))
            for r, speed in enumerate(speeds):
                print(f'| {r} | {speed["matmul_gflops"]:.0f} | {speed["python_mloops"]:.1f} | '
                      + ' | '.join(f'{ratios[side][r]:.2f}×' for side in ours) + ' |')
        print()


if __name__ == '__main__':
    main()
