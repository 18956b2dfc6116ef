"""Whole runs with one train step per call against k steps per call (`config.steps_per_execution`).

    python benchmarks/steps_per_execution.py                   # both jobs, k=10, 3 rounds (~5 min)
    python benchmarks/steps_per_execution.py --jobs=small --k=20 --rounds=5

Each round launches every job twice, as fresh processes, with `--config.steps_per_execution=1`
and `=k`, alternating which goes first, after waiting for the machine to go quiet:

- `main`: the README's main job, `experiments/vae.py:epochs=10` (MLP 784-500-20, binarized
  MNIST, batch 128, 3,900 steps, an eval, image grids and a checkpoint per epoch).
- `small`: the same model at batch 20 (the batch of Burda et al.'s rows in the ledger) for
  3,000 steps, evaluated once at the end: a step small enough that each call's fixed cost is
  a large part of it.

Printed per job: the whole process's wall time, the train steps' time (the run's
timings.jsonl `train_steps`: every call after the first, which compiles) and the final test −ELBO
(which moves by float rounding only), medians over rounds with their range, and the ratio of
the two sides per round. The caches vae_jax keeps per machine are used as they are, so both
sides read decoded data and compiled code once the first round has filled them.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end import DATA, last_record, run_process  # noqa: E402
from timing import wait_for_idle  # noqa: E402

JOBS = {
    'main': ['--config=experiments/vae.py:epochs=10'],
    'small': ['--config=experiments/vae.py', '--config.batch_size=20', '--config.num_steps=3000',
              '--config.eval_every=3000', '--config.log_every=500',
              '--config.checkpoint_every=3000'],
}


def one_run(job: str, k: int, workdir: Path, env: dict) -> dict:
    seconds, _, _ = run_process([sys.executable, 'launch.py', *JOBS[job], f'--workdir={workdir}',
                                 f'--config.steps_per_execution={k}'], env)
    times = json.loads((workdir / 'timings.jsonl').read_text().splitlines()[-1])['seconds']
    return {'wall_s': seconds, 'train_s': times['train_steps'],
            'neg_elbo': last_record(workdir, 'eval')['neg_elbo']}


def spread(values) -> str:
    return f'{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--jobs', default='main,small')
    parser.add_argument('--k', type=int, default=10, help='steps per call on the second side')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault('TFDS_DATA_DIR', str(DATA))
    sides = (1, args.k)
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.jobs.split(','):
            rows = {k: [] for k in sides}
            for r in range(args.rounds):
                for k in (sides if r % 2 == 0 else sides[::-1]):
                    wait_for_idle(20)
                    rows[k].append(one_run(job, k, Path(tmp) / f'{job}_{k}_{r}', env))
                    print(f'{job} round {r} k={k}: {json.dumps(rows[k][-1])}', flush=True)
            print(f'\n### {job} ({args.rounds} alternating rounds)\n')
            print('| steps per call | wall s | train steps s | test −ELBO |\n|---|---|---|---|')
            for k, rs in rows.items():
                print(f'| {k} | {spread([x["wall_s"] for x in rs])} | '
                      f'{spread([x["train_s"] for x in rs])} | '
                      f'{statistics.median(x["neg_elbo"] for x in rs):.2f} |')
            for key in ('wall_s', 'train_s'):
                ratios = [a[key] / b[key] for a, b in zip(rows[1], rows[args.k])]
                print(f'\nk=1 / k={args.k} ({key}): median {statistics.median(ratios):.2f}× '
                      f'(rounds: {", ".join(f"{x:.2f}" for x in ratios)})')
            print()


if __name__ == '__main__':
    main()
