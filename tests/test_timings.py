"""vae_jax.timings (where a launch's time goes) and what a run records of it."""

import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from vae_jax import timings
from vae_jax.train import train_and_evaluate


def test_phases_add_up_and_compilation_is_counted_apart():
    t = timings.Timings()
    with t.phase('work'):
        time.sleep(0.2)
    with t.phase('work'):
        time.sleep(0.1)
    # A fresh function: its compilation happens inside the phase and is counted as 'compile'.
    f = jax.jit(lambda x: jnp.linalg.svd(x @ x.T + 3.0 * jnp.eye(48))[1].sum() * 1.2345)
    with t.phase('first call'):
        f(jnp.ones((48, 48))).block_until_ready()
    d = t.as_dict()
    assert 0.29 <= d['work'] < 0.45
    assert d['compile'] > 0.0
    assert d['first call'] >= 0.0
    assert d['first call'] + d['compile'] < 5.0
    assert list(d)[:2] == ['startup', 'work']  # in the order they first ran
    assert d['total'] >= d['work'] + d['compile']
    line = t.summary()
    assert line.startswith('time ') and 'work 0.3' in line and 'compile' in line


def test_process_age_is_the_time_since_the_process_started():
    out = subprocess.run([sys.executable, '-c',
                          'import time; time.sleep(1.0); from vae_jax import timings; '
                          'print(timings.process_age())'],
                         capture_output=True, text=True, check=True).stdout
    assert 1.0 <= float(out) < 30.0


def test_startup_rule(monkeypatch):
    """No entry point: no start-up. With one: the process's age, unless the process is over a
    second older than the entry point's first line (then the time since that line)."""
    monkeypatch.setattr(timings, '_entry', [])
    assert timings.startup_seconds() is None
    monkeypatch.setattr(timings, '_entry', [time.monotonic() - 0.5])
    monkeypatch.setattr(timings, 'process_age', lambda: 0.9)  # interpreter start + 0.5 s
    assert timings.startup_seconds() == 0.9
    monkeypatch.setattr(timings, 'process_age', lambda: 100.0)  # exec'd by an older shell
    assert 0.5 <= timings.startup_seconds() < 1.0
    monkeypatch.setattr(timings, 'process_age', lambda: None)  # no /proc
    assert 0.5 <= timings.startup_seconds() < 1.0


def test_startup_is_counted_from_the_launch_not_from_the_shell_that_execd_it(repo, tmp_path):
    """A shell that sleeps 3 s and then execs launch.py hands Python a process 3 s old: the
    run's start-up phase is launch.py's interpreter and imports, not the shell's sleep."""
    import shlex
    workdir = tmp_path / 'run'
    launch = (f'exec {shlex.quote(sys.executable)} launch.py '
              f'--config=experiments/toy2d.py:steps=3 --config.data.toy_examples=500 '
              f'--config.model.hidden=8, --workdir={shlex.quote(str(workdir))}')
    subprocess.run(['bash', '-c', f'sleep 3; {launch}'], cwd=repo, check=True,
                   capture_output=True, timeout=300)  # conftest's XLA_FLAGS: unoptimised code
    [entry] = [json.loads(l) for l in (workdir / 'timings.jsonl').read_text().splitlines()]
    assert 0.1 < entry['seconds']['startup'] < 3.0


def test_a_run_records_its_timings_beside_its_metrics(tiny_toy2d_config, tmp_path):
    workdir = tmp_path / 'run'
    train_and_evaluate(tiny_toy2d_config(), str(workdir))
    entries = [json.loads(l) for l in (workdir / 'timings.jsonl').read_text().splitlines()]
    assert len(entries) == 1
    seconds = entries[0]['seconds']
    assert entries[0]['start_step'] == 0 and entries[0]['end_step'] == 6
    for phase in ('startup', 'data', 'init', 'first_step', 'train_steps', 'eval', 'compile',
                  'checkpoints', 'other', 'total'):
        assert seconds[phase] >= 0.0, phase
    # A run in a process that was not started for it (this test's worker, a notebook's
    # kernel) has no start-up phase: the process's age is not the run's.
    assert seconds['startup'] == 0.0
    # metrics.jsonl stays what it was: the same lines for the same run, whatever the timings.
    splits = {json.loads(l)['split'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()}
    assert splits <= {'train', 'eval'}


def test_the_metric_writer_does_not_import_torch(tmp_path):
    pytest.importorskip('torch')  # only then is there an import to avoid
    code = ('import sys; from vae_jax.metric_writer import MetricWriter; '
            f'w = MetricWriter(__import__("pathlib").Path({str(tmp_path)!r}), None); '
            'w.scalars(1, "train", {"loss": 1.0}); w.close(); '
            'print("torch" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-1] == 'False'
    assert list(tmp_path.glob('events.out.tfevents.*'))
