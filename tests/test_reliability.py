"""A run survives what the machine does to it, and its workdir tells the truth.

Config changes on relaunch, damaged checkpoints, SIGTERM, kill -9 during checkpoint saves (plain
and vmapped), TensorBoard and JSONL after kills, the workdir lock. Runs are toy 2-D (no data
files), so each launch costs a few seconds.
"""

import functools
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import toy2d
from vae_jax import train, workdir as workdir_lib
from vae_jax.checkpoints import checksum
from vae_jax.errors import UserError
from vae_jax.metric_writer import MetricWriter, read_metrics
from vae_jax.run import load_run
from vae_jax.sweep import expand, product, run_sweep, sweep

TOY = ['--config=experiments/toy2d.py', '--config.num_steps=40', '--config.checkpoint_every=10',
       '--config.log_every=5', '--config.eval_every=20', '--config.batch_size=64',
       '--config.keep_checkpoints=2', '--config.eval_examples=1000']


def toy_config(**overrides):
    c = toy2d.get_config('steps=40')
    c.checkpoint_every, c.log_every, c.eval_every, c.batch_size = 10, 5, 20, 64
    c.keep_checkpoints, c.eval_examples = 2, 1000
    c.update_from_flattened_dict(overrides)
    return c


def digest(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def launch(launch):
    """conftest's launch.py runner (fault=... runs tests/fault_launch.py), here on 4 fake devices
    like the in-process reference runs."""
    return functools.partial(launch, devices=4)


def one_error_line(result, message: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert 'Traceback' not in result.stderr


def tensorboard_scalars(workdir: Path) -> dict[str, list[int]]:
    """{tag: steps} as TensorBoard shows them: event files read in name order, and a
    SessionLog START at step s drops every event of step >= s read before it."""
    from tensorboardX.proto import event_pb2
    seen: dict[str, list[int]] = {}
    for path in sorted(workdir.glob('events.out.tfevents.*')):
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack('<Q', data[pos:pos + 8])
            if pos + 16 + length > len(data):
                break  # a record torn by a kill: TensorBoard stops there too
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            if event.HasField('session_log') and event.session_log.status == 1:  # START
                seen = {t: [s for s in steps if s < event.step] for t, steps in seen.items()}
            for v in event.summary.value:
                if v.HasField('simple_value'):
                    seen.setdefault(v.tag, []).append(event.step)
    return seen


def assert_same_state(a, b) -> None:
    assert checksum(a) == checksum(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def assert_logs_read_as_one_run(workdir: Path, reference: Path, preempted_at=()) -> None:
    """metrics.jsonl and TensorBoard hold every logged step once, with the reference run's
    values. A SIGTERM at step s logs the window up to s (an extra train row), which shortens
    the window of the next log step: those two rows are the only ones that differ."""
    rows, bad = read_metrics(workdir / 'metrics.jsonl')
    ref, _ = read_metrics(reference / 'metrics.jsonl')
    assert bad == 0
    keys = [(r['step'], r['split']) for r in rows]
    assert keys == sorted(set(keys), key=keys.index)  # once each, in order
    assert [r['step'] for r in rows] == sorted(r['step'] for r in rows)
    cut = {(s, 'train') for s in preempted_at}
    cut |= {min(((r['step'], 'train') for r in ref if r['step'] > s and r['split'] == 'train'))
            for s in preempted_at}
    assert [r for r in rows if (r['step'], r['split']) not in cut] == [
        r for r in ref if (r['step'], r['split']) not in cut]
    tb = tensorboard_scalars(workdir)
    assert tb.keys() == tensorboard_scalars(reference).keys() and 'train/loss' in tb
    for tag, steps in tb.items():  # TensorBoard shows exactly the steps of metrics.jsonl
        assert steps == [r['step'] for r in rows if r['split'] == tag.split('/')[0]], tag


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted 40-step toy run, trained here on all 4 fake devices."""
    workdir = tmp_path_factory.mktemp('reference')
    return workdir, train.train_and_evaluate(toy_config(), workdir)


# --- a workdir belongs to one run ----------------------------------------------------------

def test_relaunch_with_another_config_is_refused_and_allowed_changes_are_recorded(
        reference, tmp_path):
    ref_dir, ref_state = reference
    run = tmp_path / 'run'
    train.train_and_evaluate(toy_config(num_steps=20), run)
    before = digest(run)
    for overrides, named in [({'objective.beta': 4.0}, 'objective.beta 1.0 -> 4.0'),
                             ({'model.latents': 3}, 'model.latents 2 -> 3'),
                             ({'data.toy_kind': 'gaussian_mixture'}, 'data.toy_kind'),
                             ({'seed': 1}, 'seed 0 -> 1'),
                             ({'optim.schedule': 'cosine'}, 'optim.schedule')]:
        with pytest.raises(UserError, match='another config') as e:
            train.train_and_evaluate(toy_config(num_steps=40, **overrides), run)
        assert named in str(e.value) and '--allow_config_change' in str(e.value)
        assert digest(run) == before  # refused before anything was written
    with pytest.raises(UserError, match='already trained to step 20'):
        train.train_and_evaluate(toy_config(num_steps=10), run)
    assert digest(run) == before
    # Under a cosine schedule the length shapes the learning rate: refused too.
    cos = tmp_path / 'cosine'
    train.train_and_evaluate(toy_config(num_steps=10, **{'optim.schedule': 'cosine'}), cos)
    with pytest.raises(UserError, match='num_steps 10 -> 20'):
        train.train_and_evaluate(toy_config(num_steps=20, **{'optim.schedule': 'cosine'}), cos)

    # More steps (constant schedule) and other reporting intervals: allowed, recorded, and the
    # run ends exactly where the uninterrupted one does.
    state = train.train_and_evaluate(toy_config(num_steps=40, eval_examples=500), run)
    assert_same_state(state, ref_state)
    history = [json.loads(l) for l in (run / 'history.jsonl').read_text().splitlines()]
    assert [h['start_step'] for h in history] == [0, 20]
    assert history[1]['changes'] == {'eval_examples': [1000, 500], 'num_steps': [20, 40]}
    assert json.loads((run / 'config.json').read_text())['num_steps'] == 40

    # --allow_config_change continues with the change, and the history says from which step.
    state = train.train_and_evaluate(toy_config(num_steps=50, **{'objective.beta': 2.0}), run,
                                     allow_config_change=True)
    assert int(state.step) == 50
    last = json.loads((run / 'history.jsonl').read_text().splitlines()[-1])
    assert last['start_step'] == 40 and last['forced'] == ['objective.beta']
    assert last['changes']['objective.beta'] == [1.0, 2.0]
    # Not even forced: another parameter layout cannot continue these checkpoints.
    before = {k: v for k, v in digest(run).items() if k != workdir_lib.LOCK_FILE}
    with pytest.raises(UserError, match='another layout.*shape \\(2, 64\\) there, \\(3, 64\\) now'):
        train.train_and_evaluate(toy_config(num_steps=60, **{'model.latents': 3}), run,
                                 allow_config_change=True)
    assert {k: v for k, v in digest(run).items() if k != workdir_lib.LOCK_FILE} == before


# --- checkpoints that survive the machine --------------------------------------------------

def _damage(checkpoint: Path, how: str) -> str:
    files = sorted((p for p in checkpoint.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
    victim = files[-1]  # the largest: array data
    if how == 'truncate':
        victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
    else:
        victim.unlink()
    return victim.name


@pytest.mark.parametrize('how', ['truncate', 'delete'])
def test_damaged_newest_checkpoint_is_skipped_in_eval_and_training(reference, tmp_path, how):
    ref_dir, ref_state = reference
    run = tmp_path / 'run'
    train.train_and_evaluate(toy_config(num_steps=30), run)
    assert sorted(int(p.name) for p in (run / 'checkpoints').iterdir()) == [20, 30]
    _damage(run / 'checkpoints' / '30', how)

    loaded = load_run(run)  # what --mode=eval and notebooks use: read-only fallback
    assert loaded.step == 20
    assert (run / 'checkpoints' / '30').exists()  # eval leaves a (maybe training) run alone

    state = train.train_and_evaluate(toy_config(num_steps=40), run)
    assert_same_state(state, ref_state)  # resumed from 20 and retrained 21..40 exactly
    set_aside = list((run / 'checkpoints_set_aside').iterdir())
    assert len(set_aside) == 1 and set_aside[0].name.startswith('30.')
    history = [json.loads(l) for l in (run / 'history.jsonl').read_text().splitlines()]
    assert history[-1]['start_step'] == 20
    assert_logs_read_as_one_run(run, ref_dir)


def test_sigterm_and_kill_9_during_saves_resume_bit_identically(reference, launch, tmp_path):
    """One run through launch.py: killed (-9) while orbax writes the step-20 checkpoint, then
    preempted by SIGTERM at step 27, then finished; it ends as the uninterrupted run."""
    ref_dir, ref_state = reference
    run = tmp_path / 'run'
    killed = launch(*TOY, f'--workdir={run}', fault='kill_in_save=2')
    assert killed.returncode == -signal.SIGKILL
    termed = launch(*TOY, f'--workdir={run}', fault='term_at_step=27')
    assert termed.returncode == 128 + signal.SIGTERM, termed.stderr[-3000:]
    assert 'stopped by SIGTERM at step 27' in termed.stderr and 'Traceback' not in termed.stderr
    assert load_run(run).step == 27  # saved at the step it was in
    done = launch(*TOY, f'--workdir={run}')
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(load_run(run).state, ref_state)
    assert_logs_read_as_one_run(run, ref_dir, preempted_at=[27])
    history = [json.loads(l) for l in (run / 'history.jsonl').read_text().splitlines()]
    assert [h['start_step'] for h in history][-1] == 27


def test_sigterm_inside_a_call_of_several_steps_resumes_bit_identically(launch, tmp_path):
    """4 steps per call, a log every 5 steps: calls train 1-4, 5, 6-9, 10, ... 26-29, 30. A
    SIGTERM while step 27's batch is drawn stops the run after its call (step 29, not a step
    that saves); the relaunch makes the calls an uninterrupted run makes from there."""
    ref = train.train_and_evaluate(toy_config(steps_per_execution=4), tmp_path / 'ref')
    run, k4 = tmp_path / 'run', '--config.steps_per_execution=4'
    termed = launch(*TOY, k4, f'--workdir={run}', fault='term_at_step=27')
    assert termed.returncode == 128 + signal.SIGTERM, termed.stderr[-3000:]
    assert 'stopped by SIGTERM at step 29' in termed.stderr and 'Traceback' not in termed.stderr
    done = launch(*TOY, k4, f'--workdir={run}')
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(load_run(run).state, ref)
    assert_logs_read_as_one_run(run, tmp_path / 'ref', preempted_at=[29])


def test_vmapped_group_killed_between_its_points_saves_resumes(launch, tmp_path):
    """kill -9 after the first point's step-20 save: the points' checkpoints are at different
    steps; the relaunch resumes all from their newest common step and ends as an uninterrupted
    group."""
    config = toy_config(num_steps=20)
    args = ['--config=experiments/toy2d.py:seeds=1', '--sweep', '--sweep_vmap',
            '--config.num_steps=20', '--config.checkpoint_every=10', '--config.log_every=5',
            '--config.eval_every=20', '--config.batch_size=64', '--config.keep_checkpoints=2',
            '--config.eval_examples=1000']
    root = tmp_path / 'sweep'
    # toy2d's sweep is β ∈ {0.25, 1, 4}: three points; 4th save = point 0 at step 20.
    killed = launch(*args, f'--workdir={root}', fault='kill_after_save=4')
    assert killed.returncode == -signal.SIGKILL
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert sorted(workdir_lib.newest_checkpoint(root / n) for n in names) == [10, 10, 20]
    done = launch(*args, f'--workdir={root}')
    assert done.returncode == 0, done.stderr[-3000:]
    # Compare with the same points trained vmapped without interruption.
    reference = tmp_path / 'ref3'
    ref_points = expand(product(sweep('objective.beta', [0.25, 1.0, 4.0]), sweep('seed', [0])))
    run_sweep(config, ref_points, reference, vmap=True)
    for p in ref_points:
        assert_same_state(load_run(root / p.name).state, load_run(reference / p.name).state)
        assert_logs_read_as_one_run(root / p.name, reference / p.name)


# --- metrics ----------------------------------------------------------------------------------

def test_torn_jsonl_line_dropped_and_final_eval_kept_on_relaunch(reference, tmp_path):
    """A relaunch of a finished run: the torn line goes, TensorBoard still shows the final
    eval (its purge marker is at step 41)."""
    ref_dir, _ = reference
    run = tmp_path / 'run'
    train.train_and_evaluate(toy_config(), run)
    with open(run / 'metrics.jsonl', 'a') as f:
        f.write('{"step": 35, "split": "tra')  # what a kill in the middle of a write leaves
    train.train_and_evaluate(toy_config(), run)
    assert len(list(run.glob('events.out.tfevents.*'))) == 2
    assert_logs_read_as_one_run(run, ref_dir)
    assert tensorboard_scalars(run)['eval/neg_elbo'] == [20, 40]


def test_writers_opened_within_one_second_keep_separate_event_files(tmp_path):
    """Three writers opened back to back in one process (one wall-clock second, one pid):
    each gets its own event file, name order is opening order, and the purge markers leave
    TensorBoard the steps a resumed run's history has."""
    for start, steps in [(0, [10, 20, 30]), (20, [30, 40]), (None, [40])]:
        writer = MetricWriter(tmp_path, start)
        for s in steps:
            writer.scalars(s, 'train', {'loss': float(s)}, jsonl=False)
        writer.close()
    files = sorted(tmp_path.glob('events.out.tfevents.*'))
    assert len(files) == 3
    assert [f.name.rsplit('.', 2)[1] for f in files] == ['0000', '0001', '0002']
    # The second run resumed from 20 (purge at 21 drops the first run's 30); the evaluation
    # (start None) purges nothing, so 40 is there twice, as it was logged twice.
    assert tensorboard_scalars(tmp_path) == {'train/loss': [10, 20, 30, 40, 40]}


# --- one process per workdir ----------------------------------------------------------------

def test_lock_names_its_holder_and_dies_with_it(repo, tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from pathlib import Path; from vae_jax import workdir; '
        'lock = workdir.lock(Path(sys.argv[1])); lock.__enter__(); print("locked", flush=True); '
        'time.sleep(60)'), str(run)], stdout=subprocess.PIPE, text=True, cwd=repo)
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(UserError, match=f'in use by pid {holder.pid} on '):
        train.train_and_evaluate(toy_config(num_steps=10), run)
    assert sorted(p.name for p in run.iterdir()) == [workdir_lib.LOCK_FILE]  # nothing written
    # A sweep point running elsewhere is reported failed here; its status file is untouched.
    from vae_jax.sweep.runner import run_point
    (point,) = expand(sweep('seed', [0]))
    outcome = run_point(point, toy_config(num_steps=10), run, train_fn=pytest.fail)
    assert outcome.status == 'failed' and f'in use by pid {holder.pid}' in outcome.error
    assert not (run / 'sweep_status.json').exists()
    # A holder killed with -9 leaves the file but no lock.
    holder.kill()
    holder.wait()
    train.train_and_evaluate(toy_config(num_steps=10), run)
    assert load_run(run).step == 10


# --- bad input: one error line, exit status 2, nothing written -----------------------------

@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('finished')
    train.train_and_evaluate(toy_config(num_steps=10), workdir)
    return workdir


@pytest.mark.parametrize('args, message', [
    (['--config.batch_size=100000'], 'larger than the 50000 training examples'),
    (['--config.model.hidden=(0,)'], 'model.hidden'),
    (['extra'], 'unexpected arguments: extra'),
    (['--mode=eval', '--eval_examples=-1'], 'eval_examples'),
])
def test_bad_launch_is_one_line_and_changes_nothing(finished_run, launch, tmp_path, args,
                                                    message):
    before = digest(finished_run)
    config = ['--config=experiments/toy2d.py', '--config.num_steps=10',
              '--config.checkpoint_every=10', '--config.log_every=5', '--config.eval_every=20',
              '--config.batch_size=64', '--config.keep_checkpoints=2',
              '--config.eval_examples=1000']
    one_error_line(launch(*config, *args, f'--workdir={finished_run}'), message)
    assert digest(finished_run) == before
    if args == ['--config.batch_size=100000']:  # and on a new workdir: not even created
        fresh = tmp_path / 'fresh'
        one_error_line(launch(*config, *args, f'--workdir={fresh}'), message)
        assert not fresh.exists()


def test_checkpoints_without_a_config_are_not_adopted(finished_run, tmp_path):
    import shutil
    run = tmp_path / 'copy'
    shutil.copytree(finished_run, run)
    (run / 'config.json').unlink()
    before = digest(run)
    with pytest.raises(UserError, match='holds checkpoints but no config.json'):
        train.train_and_evaluate(toy_config(num_steps=20), run)
    assert digest(run) == before


def test_eval_with_a_damaged_config_json(finished_run, launch, tmp_path):
    run = tmp_path / 'copy'
    import shutil
    shutil.copytree(finished_run, run)
    (run / 'config.json').write_text('{"model": {"latents": 2, ')
    one_error_line(launch('--mode=eval', f'--workdir={run}'), 'config.json is damaged')


def test_eval_of_a_run_that_cannot_be_written(finished_run, monkeypatch):
    from vae_jax.evaluate import report
    real = os.access
    monkeypatch.setattr(report.os, 'access', lambda p, mode: False if Path(p) == finished_run
                        else real(p, mode))
    with pytest.raises(UserError, match='is not writable'):
        report.evaluate_run(finished_run, iwae_samples=2, max_examples=10)


def test_full_disk_keeps_the_previous_checkpoint(launch, tmp_path):
    """A 2 MiB tmpfs as the workdir's disk; filled, the next save fails with one line."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    try:
        run = mount / 'run'
        train.train_and_evaluate(toy_config(num_steps=10), run)
        filler = mount / 'filler'
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            while os.write(fd, b'\0' * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        result = launch(*TOY, '--config.num_steps=20', f'--workdir={run}')
        assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-3000:]
        errors = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
        assert len(errors) == 1 and 'No space left' in errors[0], result.stderr[-3000:]
        filler.unlink()
        assert load_run(run).step == 10  # the previous checkpoint is intact
    finally:
        subprocess.run(['umount', '-l', str(mount)])


def test_checkpoints_from_before_the_objective_registry_still_resume(tmp_path):
    """Checkpoints written when the TrainState's auxiliary model was called `discriminator`
    (what steps.TrainStateV1 saves) are read into today's TrainState, aux and all."""
    from vae_jax import model_fns, steps
    from vae_jax.checkpoints import Checkpoints
    c = toy2d.get_config('steps=6')
    c.objective.name = 'factor_vae'
    c.discriminator.hidden = (8,)
    fns = model_fns.build(c.model, (2,), 5)
    state = steps.init_train_state(jax.random.key(0), fns, c, (2,), 6)
    state = state.replace(step=3, aux=state.aux.replace(step=3))
    old = state.as_saved({'discriminator', 'params', 'opt_state', 'step'})
    assert isinstance(old, steps.TrainStateV1)
    ckpt = Checkpoints(tmp_path, 2)
    ckpt.save(3, old)
    ckpt.wait()
    template = steps.init_train_state(jax.random.key(1), fns, c, (2,), 6)
    restored = ckpt.read(template, 3)
    ckpt.close()
    assert isinstance(restored, steps.TrainState) and int(restored.aux.step) == 3
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_a_conv_run_saved_before_model_upsample_reads_as_subpixel(tmp_path):
    """A conv run's config.json written before `model.upsample` existed trained the sub-pixel
    decoder: it is read back as that (not today's default), and relaunching it with today's
    default is refused as another config. Other encoders' runs are unaffected."""
    from vae_jax import base_config
    from experiments import beta_vae
    c = beta_vae.get_config('quick')
    assert c.model.upsample == 'transposed'
    saved = json.loads(c.to_json_best_effort())
    del saved['model']['upsample']
    (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(saved))
    assert workdir_lib.read_config(tmp_path, base_config()).model.upsample == 'subpixel'
    with pytest.raises(UserError, match="model.upsample 'subpixel' -> 'transposed'"):
        workdir_lib.check_relaunch(tmp_path, c, base_config(), allow_change=False)
    c.model.upsample = 'subpixel'
    assert workdir_lib.check_relaunch(tmp_path, c, base_config(), allow_change=False) == {}
    # A run of another encoder never upsampled: it reads as today's default, and relaunches.
    mlp = toy_config()
    saved = json.loads(mlp.to_json_best_effort())
    del saved['model']['upsample']
    (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(saved))
    assert workdir_lib.read_config(tmp_path, base_config()).model.upsample == 'transposed'
    assert workdir_lib.check_relaunch(tmp_path, mlp, base_config(), allow_change=False) == {}
