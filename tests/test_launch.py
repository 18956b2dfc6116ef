"""launch.py end to end, as a user runs it: real MNIST, outputs on disk, one-line errors."""

import hashlib
import json

import pytest


def digest(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob('*')) if p.is_file()}


# A config's XLA flag (one that changes no number this test checks): launch sets it before
# JAX starts.
FLAG = '--xla_cpu_enable_fast_min_max=false'


@pytest.fixture(scope='module')
def cvae_run(tfds_dir, launch, tmp_path_factory):
    """A few steps of experiments/cvae.py on real MNIST through launch.py, on 2 devices."""
    workdir = tmp_path_factory.mktemp('cvae')
    result = launch('--config=experiments/cvae.py', f'--workdir={workdir}',
                    '--config.num_steps=12', '--config.checkpoint_every=6',
                    '--config.eval_every=12', '--config.eval_examples=500',
                    '--config.log_every=6', '--config.model.hidden=(64,)',
                    f'--config.xla_cpu_flags={FLAG}', env_extra={'TFDS_DATA_DIR': tfds_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_cvae_through_launch_writes_everything(cvae_run):
    workdir, result = cvae_run
    assert 'step 12/12' in result.stderr and 'examples/s' in result.stderr and 'ETA' in result.stderr
    assert 'orbax' not in result.stderr  # library INFO chatter is filtered
    rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
    (last_eval,) = [r for r in rows if r['split'] == 'eval']
    assert last_eval['step'] == 12 and 100 < last_eval['neg_elbo'] < 600
    assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['12', '6']
    assert json.loads((workdir / 'config.json').read_text())['model']['hidden'] == [64]
    assert (workdir / 'images' / 'samples_0000012.png').is_file()
    assert list(workdir.glob('events.out.tfevents.*'))
    # The XLA flags the process ran with: the config's, after the test's own (kept).
    (entry,) = [json.loads(l) for l in (workdir / 'history.jsonl').read_text().splitlines()]
    assert entry['xla_flags'].split()[:2] == ['--xla_force_host_platform_device_count=2',
                                             '--xla_backend_optimization_level=0']
    assert entry['xla_flags'].split()[-1] == FLAG


@pytest.mark.parametrize('args,message', [
    (['--config=experiments/cvae.py', '--config.objective.bta=3'], "'bta'"),
    (['--config=experiments/cvae.py', '--config.data.name=cifar10'], 'unknown data.name'),
    (['--config=experiments/cvae.py', '--config.batch_size=127'], 'not divisible by the 2 devices'),
    (['--config=experiments/cvae.py', '--config.objective.beta=-1'], 'beta must be >= 0'),
    (['--config=experiments/missing.py'], 'No such file'),
    (['--config=experiments/cvae.py', '--config.objective.beta=abc'], 'could not convert'),
    (['--config=experiments/cvae.py', '--config.xla_cpu_flags=fast'], 'must be XLA flags'),
])
def test_bad_input_gives_one_line_and_keeps_the_run(cvae_run, launch, args, message):
    workdir, _ = cvae_run
    before = digest(workdir)
    result = launch(*args, f'--workdir={workdir}')
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert digest(workdir) == before


def test_workdir_that_is_a_file_is_refused(tmp_path, tfds_dir, launch):
    f = tmp_path / 'file'
    f.write_text('x')
    result = launch('--config=experiments/cvae.py', f'--workdir={f}',
                    env_extra={'TFDS_DATA_DIR': tfds_dir})
    assert result.returncode == 2 and 'is not a directory' in result.stderr
    assert f.read_text() == 'x'
