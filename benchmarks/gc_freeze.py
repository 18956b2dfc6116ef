"""The main job with the imports' and the run's objects frozen out of the garbage collector's
sight (`vae_jax.gc_freeze`, the default) against `VAE_JAX_GC_FREEZE=0`, alternating.

    python benchmarks/gc_freeze.py                   # the main job, 5 rounds (~6 min)
    python benchmarks/gc_freeze.py --epochs=1 --rounds=9

After one untimed launch that warms the caches, each round launches
`launch.py --config=experiments/vae.py:epochs=N` twice, as fresh processes,
one per setting, alternating which goes first, after waiting for the machine to go quiet.
Printed per setting, medians over rounds with their range: the whole process's wall time; the
run's logged total (its timings.jsonl, from the process's start to the last line of the log);
`exit`, the wall time less that total (Python's shutdown, where it collects garbage several
times); the train steps; and how many full collections the process made before its shutdown
and the seconds they took (`gc.callbacks`, registered by a few lines that then run launch.py
as `__main__`). In both settings launch.py keeps the collector off during its imports.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from end_to_end import DATA, run_process  # noqa: E402
from timing import wait_for_idle  # noqa: E402

SETTINGS = {'frozen': '1', 'not frozen': '0'}

# launch.py as __main__, with the process's full collections counted and written to argv[1].
COUNTED = '''
import atexit, gc, json, runpy, sys, time
out, seen = sys.argv.pop(1), {'full': 0, 'full_s': 0.0}
def watch(phase, info, start=[0.0]):
    if info['generation'] != 2:
        return
    if phase == 'start':
        start[0] = time.perf_counter()
    else:
        seen['full'] += 1
        seen['full_s'] += time.perf_counter() - start[0]
gc.callbacks.append(watch)
atexit.register(lambda: open(out, 'w').write(json.dumps(seen)))
sys.argv[0] = 'launch.py'
runpy.run_path('launch.py', run_name='__main__')
'''


def launch(epochs: int, workdir: Path, freeze: str, env: dict) -> dict:
    stats = workdir.with_suffix('.gc.json')
    run_env = dict(env, VAE_JAX_GC_FREEZE=freeze)
    wall, peak, _ = run_process([sys.executable, '-c', COUNTED, str(stats),
                                 f'--config=experiments/vae.py:epochs={epochs}',
                                 f'--workdir={workdir}'], run_env)
    times = json.loads((workdir / 'timings.jsonl').read_text().splitlines()[-1])['seconds']
    gc_stats = json.loads(stats.read_text())
    return {'wall': wall, 'total': times['total'], 'exit': wall - times['total'],
            'train_steps': times['train_steps'], 'full_collections': gc_stats['full'],
            'full_collection_s': gc_stats['full_s'], 'peak_mib': peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault('TFDS_DATA_DIR', str(DATA))
    rows = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        # Untimed: fills the page cache and vae_jax's caches (decoded data, compiled code).
        launch(args.epochs, Path(tmp) / 'warm_up', '1', env)
        for r in range(args.rounds):
            for name in names[r % 2:] + names[:r % 2]:
                wait_for_idle(20)
                rows[name].append(launch(args.epochs, Path(tmp) / f'{r}_{SETTINGS[name]}',
                                         SETTINGS[name], env))
                print(f'round {r} {name}: {json.dumps(rows[name][-1])}', flush=True)
    keys = list(rows[names[0]][0])
    print(f'\n### experiments/vae.py:epochs={args.epochs}, {args.rounds} alternating rounds '
          f'(medians, min-max)\n')
    print('| setting | ' + ' | '.join(keys) + ' |\n|---|' + '---|' * len(keys))
    for name, rs in rows.items():
        cells = []
        for k in keys:
            v = [x[k] for x in rs]
            cells.append(f'{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    ratios = [b['wall'] / a['wall'] for a, b in zip(rows['frozen'], rows['not frozen'])]
    print(f'\nwall, not frozen / frozen: median {statistics.median(ratios):.3f}× '
          f'(rounds: {", ".join(f"{x:.3f}" for x in ratios)})')


if __name__ == '__main__':
    main()
