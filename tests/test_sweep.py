"""Sweeps: definitions and names, the runner (skip, resume, fault isolation), launch.py, summary."""

import csv
import hashlib
import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from vae_jax import train
from vae_jax.data import pipeline
from vae_jax.errors import UserError
from vae_jax.run import load_run
from vae_jax.sweep import (apply_overrides, chain, expand, load_sweep, product, read_status,
                           run_sweep, summarize, sweep, zip_)
from vae_jax.sweep.__main__ import main as sweep_main


# Point 0 diverges (Adam with this rate puts the loss at NaN within two steps); 1-3 train:
# two seeds of β=1 and one of β=4.
POINTS = expand(chain(sweep('optim.learning_rate', [1e30]),
                      zip_(sweep('objective.beta', [1, 1, 4]), sweep('seed', [0, 1, 0]))))


def digest(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob('*')) if p.is_file()}


def records(workdir, split='eval'):
    lines = (workdir / 'metrics.jsonl').read_text().splitlines()
    return [r for r in map(json.loads, lines) if r['split'] == split]


# --- definitions ---------------------------------------------------------------------------

def test_product_and_zip_expand_to_indexed_named_points():
    points = expand(product(zip_(sweep('objective.beta', [1, 4.0]),
                                 sweep('optim.learning_rate', [1e-3, 1e-5])),
                            sweep('seed', [0, 1])))
    assert [(p.index, p.name) for p in points] == [
        (0, 'beta=1,learning_rate=0.001,seed=0'), (1, 'beta=1,learning_rate=0.001,seed=1'),
        (2, 'beta=4,learning_rate=1e-05,seed=0'), (3, 'beta=4,learning_rate=1e-05,seed=1')]
    assert points[3].overrides == {'objective.beta': 4.0, 'optim.learning_rate': 1e-5, 'seed': 1}
    assert [p.name for p in POINTS] == ['learning_rate=1e+30', 'beta=1,seed=0', 'beta=1,seed=1',
                                        'beta=4,seed=0']


def test_names_are_safe_and_spell_out_keys_whose_last_part_repeats():
    (p,) = expand([{'optim.learning_rate': 0.1, 'discriminator.learning_rate': 0.2,
                    'model.hidden': [64, np.int64(32)], 'data.toy_kind': 'a/b c',
                    'model.conditional': True}])
    assert p.name == ('optim.learning_rate=0.1,discriminator.learning_rate=0.2,'
                      'hidden=64x32,toy_kind=a-b-c,conditional=True')
    assert p.overrides['model.hidden'] == (64, 32) and type(p.overrides['model.hidden'][1]) is int
    assert [q.name for q in expand([{}])] == ['base']


@pytest.mark.parametrize('make,message', [
    (lambda: sweep('seed', [0, 1, 0]), 'points 0 and 2 have the same overrides'),
    (lambda: sweep('data.toy_kind', ['a/b', 'a-b']), "points 0 and 1 have the name 'toy_kind=a-b'"),
    (lambda: sweep('objective.beta', [4, 4.0]), 'the same overrides'),
    (lambda: zip_(sweep('seed', [0, 1]), sweep('objective.beta', [1])), 'different lengths'),
    (lambda: product(sweep('seed', [0]), sweep('seed', [1])), 'factors both set seed'),
    (lambda: sweep('objective.beta', []), 'has no values'),
    (lambda: sweep('objective..beta', [1]), 'not a dotted config field'),
    (lambda: sweep('seed', [object()]), 'use numbers, strings'),
    (lambda: [], 'the sweep has no points'),
    (lambda: {'seed': 1}, 'a sweep is a list of dicts'),
])
def test_bad_definitions_are_user_errors(make, message):
    with pytest.raises(UserError, match=message):
        expand(make())


def test_overrides_set_a_copy_of_the_locked_config_and_unknown_fields_fail(tiny_toy2d_config,
                                                                            tmp_path):
    base = tiny_toy2d_config()
    c = apply_overrides(base, {'objective.beta': 4, 'model.hidden': [16, 16]})
    assert c.objective.beta == 4.0 and type(c.objective.beta) is float
    assert c.model.hidden == (16, 16) and base.objective.beta == 1.0 and c.is_locked
    for overrides, message in [({'objective.bta': 4}, r"no field 'objective.bta' \(did you mean "
                                                     r"'objective.beta'\?\)"),
                               ({'objectiv.beta': 4}, "did you mean 'objective'"),
                               ({'objective': 4}, 'is a group of fields'),
                               ({'seed': 'x'}, "cannot set seed='x'")]:
        with pytest.raises(UserError, match=message):
            apply_overrides(base, overrides)
    # In a sweep: refused before anything is written or trained.
    points = expand(product(sweep('seed', [0]), sweep('objective.bta', [1])))
    with pytest.raises(UserError, match=r'sweep point 0 \(seed=0,bta=1\): the config has no '):
        run_sweep(base, points, tmp_path / 'root', train_fn=pytest.fail)
    with pytest.raises(UserError, match='--sweep_index=4 is out of range: the sweep has 4'):
        run_sweep(base, POINTS, tmp_path / 'root', only=4, train_fn=pytest.fail)
    with pytest.raises(UserError, match='--config.seed is set on the command line and swept'):
        run_sweep(base, POINTS, tmp_path / 'root', command_line={'seed': 3}, train_fn=pytest.fail)
    assert not (tmp_path / 'root').exists()


def test_experiment_files_declare_their_sweeps(repo, capsys):
    assert [p.name for p in load_sweep(str(repo / 'experiments/toy2d.py'))] == [
        f'beta={b},seed={s}' for b in ('0.25', '1', '4') for s in (0, 1)]
    assert sweep_main(['list', str(repo / 'experiments/toy2d.py:seeds=1')]) == 0
    assert capsys.readouterr().out == '0\tbeta=0.25,seed=0\n1\tbeta=1,seed=0\n2\tbeta=4,seed=0\n'
    assert len(load_sweep(str(repo / 'experiments/toy2d.py:seeds=3'))) == 9
    vae = load_sweep(str(repo / 'experiments/vae.py:epochs=10'))
    assert len(vae) == 15 and vae[14].overrides == {'model.latents': 50, 'seed': 2}
    with pytest.raises(UserError, match='cvae.py defines no get_sweep()'):
        load_sweep(str(repo / 'experiments/cvae.py'))


# --- the runner, in-process on a tiny real sweep ------------------------------------------------

@pytest.fixture(scope='module')
def tiny_sweep(tiny_toy2d_config, tmp_path_factory):
    root = tmp_path_factory.mktemp('sweep')
    outcomes = run_sweep(tiny_toy2d_config(), POINTS, root)
    return root, outcomes


def test_a_failing_point_is_recorded_and_the_others_train(tiny_sweep):
    root, outcomes = tiny_sweep
    assert [o.status for o in outcomes] == ['failed', 'done', 'done', 'done']
    assert 'loss became nan at step' in outcomes[0].error
    failed = read_status(root / POINTS[0].name)
    assert failed['status'] == 'failed' and failed['error'] == outcomes[0].error
    assert not (root / POINTS[0].name / 'checkpoints' / '3').exists()
    for p in POINTS[1:]:
        status = read_status(root / p.name)
        assert status['status'] == 'done' and status['wall_s'] > 0 and status['error'] is None
        config = json.loads((root / p.name / 'config.json').read_text())
        assert (config['objective']['beta'], config['seed']) == (p.overrides['objective.beta'],
                                                                 p.overrides['seed'])
        assert [r['step'] for r in records(root / p.name)] == [3, 6]
    # The seed reaches the run: two seeds of one β end with different numbers.
    assert records(root / POINTS[1].name)[-1] != records(root / POINTS[2].name)[-1]
    sweep_json = json.loads((root / 'sweep.json').read_text())
    assert [p['name'] for p in sweep_json['points']] == [p.name for p in POINTS]
    assert sweep_json['base'] == {'optim.learning_rate': 3e-3, 'objective.beta': 1.0, 'seed': 0}


def test_second_run_skips_finished_points_and_retries_the_failed_one(tiny_sweep, tiny_toy2d_config,
                                                                     tmp_path):
    root, _ = tiny_sweep
    before = {p.name: digest(root / p.name) for p in POINTS[1:]}
    calls = []

    def counting_train(config, workdir):
        calls.append(workdir)
        return train.train_and_evaluate(config, workdir)
    outcomes = run_sweep(tiny_toy2d_config(), POINTS, root, train_fn=counting_train)
    assert calls == [str(root / POINTS[0].name)]
    assert [o.skipped for o in outcomes] == [False, True, True, True]
    assert outcomes[0].status == 'failed' and read_status(root / POINTS[0].name)['attempts'] == 2
    assert {p.name: digest(root / p.name) for p in POINTS[1:]} == before
    # A finished point of another config is neither skipped nor resumed.
    other = apply_overrides(tiny_toy2d_config(), {'model.latents': 3})
    (outcome,) = run_sweep(other, POINTS, root, only=1, train_fn=pytest.fail)
    assert outcome.status == 'failed' and 'model.latents 2 -> 3' in outcome.error
    # A finished point asked for more steps (constant schedule) resumes and trains them.
    copy = tmp_path / 'copy'
    shutil.copytree(root, copy)
    longer = apply_overrides(tiny_toy2d_config(), {'num_steps': 9})
    (outcome,) = run_sweep(longer, POINTS, copy, only=1)
    assert outcome.status == 'done' and not outcome.skipped
    assert load_run(copy / POINTS[1].name).step == 9


def test_interrupted_point_resumes_from_its_checkpoint(tiny_sweep, tiny_toy2d_config, tmp_path,
                                                       monkeypatch):
    reference, _ = tiny_sweep
    # What a job killed after point 3's step-3 checkpoint leaves: the status still says
    # "started", metrics.jsonl goes past step 3, and the latest checkpoint is step 3's.
    point = tmp_path / POINTS[3].name
    shutil.copytree(reference / POINTS[3].name, point)
    shutil.rmtree(point / 'checkpoints' / '6')
    status = read_status(point)
    (point / 'sweep_status.json').write_text(json.dumps({**status, 'status': 'started'}))
    real_batches = pipeline.train_batches
    drawn = []

    def counting_batches(*args, **kwargs):
        for batch in real_batches(*args, **kwargs):
            drawn.append(batch)
            yield batch
    monkeypatch.setattr(pipeline, 'train_batches', counting_batches)
    (outcome,) = run_sweep(tiny_toy2d_config(), POINTS, tmp_path, only=3)
    assert outcome.status == 'done' and not outcome.skipped
    assert len(drawn) == 3  # steps 4-6 only: it resumed from the step-3 checkpoint
    assert read_status(point)['attempts'] == 2
    assert sorted(os.listdir(tmp_path)) == sorted([POINTS[3].name, 'sweep.json'])  # only 3
    # ... and ends where the uninterrupted run of the same point ended.
    assert records(point) == records(reference / POINTS[3].name)
    assert records(point, 'train') == records(reference / POINTS[3].name, 'train')
    rows = summarize(tmp_path)['rows']
    assert [r.status for r in rows] == ['missing', 'missing', 'missing', 'done']


# --- launch.py ---------------------------------------------------------------------------

EXPERIMENT = '''
from experiments.toy2d import get_config as toy2d_config
from vae_jax.sweep import product, sweep

def get_config(arg=None):
    c = toy2d_config('steps=4')
    c.data.toy_examples, c.batch_size, c.eval_batch_size, c.model.hidden = 500, 32, 100, (8,)
    c.eval_every = c.checkpoint_every = c.log_every = 2
    return c

def get_sweep(arg=None):
    return product(sweep('objective.beta', [-1.0, 1.0]), sweep(arg or 'seed', [0]))
'''


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp('exp') / 'exp.py'
    path.write_text(EXPERIMENT)
    return path


def test_launch_sweep_goes_on_past_a_failing_point_and_exits_nonzero(experiment, launch, tmp_path):
    result = launch(f'--config={experiment}', '--sweep', f'--workdir={tmp_path}')
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith('[  0] beta=-1,seed=0  failed') and 'beta must be >= 0' in lines[0]
    assert lines[1].startswith('[  1] beta=1,seed=0   done') and 'at step 4' in lines[1]
    assert lines[2] == f'sweep {tmp_path}: 1 of 2 points done, 1 failed'
    assert json.loads((tmp_path / 'sweep.json').read_text())['config'] == str(experiment)
    assert read_status(tmp_path / 'beta=-1,seed=0')['error'].startswith('objective.beta must')
    # One worker's share: point 1 only, which is finished, so nothing trains and all is well.
    before = digest(tmp_path / 'beta=1,seed=0')
    result = launch(f'--config={experiment}', '--sweep_index=1', f'--workdir={tmp_path}')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith('[  1] beta=1,seed=0  skipped (done)')
    assert digest(tmp_path / 'beta=1,seed=0') == before
    assert read_status(tmp_path / 'beta=-1,seed=0')['attempts'] == 1  # not retried


def test_launch_sweep_with_an_unknown_field_is_one_error_line(experiment, launch, tmp_path):
    # exp.py:objective.bta makes its get_sweep sweep 'objective.bta' instead of 'seed'.
    result = launch(f'--config={experiment}:objective.bta', '--sweep',
                    f'--workdir={tmp_path / "root"}')
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
    assert errors == ["error: sweep point 0 (beta=-1,bta=0): the config has no field "
                      "'objective.bta' (did you mean 'objective.beta'?)"], result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and not (tmp_path / 'root').exists()


# --- summary ------------------------------------------------------------------------------

def test_summary_tables_and_plots_hold_every_points_final_numbers(tiny_sweep):
    root, _ = tiny_sweep
    results = root / POINTS[2].name / 'results'
    results.mkdir()
    (results / 'eval_0000003.json').write_text(json.dumps({'step': 3, 'likelihood': {'nll': 9.0}}))
    (results / 'eval_0000006.json').write_text(json.dumps(
        {'step': 6, 'workdir': 'x', 'likelihood': {'nll': 1.5, 'k': 10},
         'latents': {'active_units': 2, 'kl_per_dim': [0.1, 0.2]}, 'note': 'text'}))
    assert sweep_main(['summarize', str(root)]) == 0

    with (root / 'summary.csv').open() as f:
        rows = list(csv.DictReader(f))
    assert [r['name'] for r in rows] == [p.name for p in POINTS]
    assert [r['status'] for r in rows] == ['failed'] + ['done'] * 3
    assert 'loss became nan' in rows[0]['error'] and rows[0]['eval/neg_elbo'] == ''
    for p, row in zip(POINTS[1:], rows[1:]):
        last = records(root / p.name)[-1]
        assert int(row['step']) == last['step'] == 6
        for k in ('neg_elbo', 'recon', 'kl'):
            assert float(row[f'eval/{k}']) == last[k]
        assert float(row['objective.beta']) == p.overrides['objective.beta']
        assert float(row['optim.learning_rate']) == 3e-3  # the base value, not overridden
    assert (rows[2]['likelihood/nll'], rows[2]['likelihood/k'],
            rows[2]['latents/active_units']) == ('1.5', '10.0', '2.0')
    assert rows[1]['likelihood/nll'] == '' and 'latents/kl_per_dim' not in rows[0]

    markdown = (root / 'summary.md').read_text()
    cells = [[c.strip() for c in l.strip('|').split('|')] for l in markdown.splitlines()
             if l.startswith('| ')]
    header = next(r for r in cells if r[:3] == ['optim.learning_rate', 'objective.beta', 'n'])
    col = header.index('eval/neg_elbo')
    by_setting = {tuple(r[:3]): r for r in cells}
    values = [records(root / p.name)[-1]['neg_elbo'] for p in POINTS[1:3]]
    assert by_setting['0.003', '1', '2'][col] == f'{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}'
    assert by_setting['0.003', '4', '1'][col] == f"{records(root / POINTS[3].name)[-1]['neg_elbo']:.4g}"
    assert set(by_setting['1e+30', '1', '0'][3:]) == {''}  # diverged: no finished seeds
    for name in ('eval-neg_elbo', 'eval-kl', 'likelihood-nll'):
        assert f'![{name}](plots/{name}.png)' in markdown
        with Image.open(root / 'plots' / f'{name}.png') as image:
            assert image.size[0] > 300 and math.prod(image.size) > 0
    assert sweep_main(['summarize', str(root / 'nowhere')]) == 2
