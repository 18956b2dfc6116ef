"""evaluate_run / launch.py --mode=eval on a tiny real run: results JSON, pictures, AUROCs."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from test_launch import launch
from test_train import tiny_config
from vae_jax import train
from vae_jax.evaluate.report import evaluate_run


@pytest.fixture(scope='module')
def two_d_run(tfds_dir, tmp_path_factory):
    """2 latents (scatter + manifold pictures), trained without digit 3 (held-out AUROC)."""
    workdir = tmp_path_factory.mktemp('report')
    config = tiny_config(tfds_dir, **{'model.latents': 2, 'data.holdout_class': 3,
                                      'num_steps': 30, 'eval_every': 30})
    train.train_and_evaluate(config, workdir)
    return workdir


def test_evaluate_run_writes_results_and_pictures(two_d_run):
    results = evaluate_run(two_d_run, iwae_samples=20, max_examples=300)
    saved = json.loads((two_d_run / 'results' / 'eval_0000030.json').read_text())
    assert saved == json.loads(json.dumps(results))
    lik = results['likelihood']
    assert lik['count'] == 300
    # The k=20 bound is tighter than the single-sample ELBO (up to Monte-Carlo noise).
    assert lik['nll'] < lik['neg_elbo'] + 0.5
    assert results['latents']['latents'] == 2 and 0 <= results['latents']['active_units'] <= 2
    probe = results['linear_probe']
    assert 0.0 <= probe['test_accuracy'] <= 1.0
    assert probe['num_train'] == 2048  # every class, not the training run's subset without 3
    held = results['anomaly']['heldout_class']
    assert held['heldout_class'] == 3 and 0.0 <= held['auroc'] <= 1.0
    ood = results['anomaly']['ood_fashion_mnist']  # skipped where fashion_mnist holds MNIST
    assert 0.0 <= ood['auroc'] <= 1.0 if 'auroc' in ood else 'same images' in ood['skipped']
    for name in ('report_traversal', 'report_manifold', 'report_latent_scatter',
                 'report_interpolation_slerp', 'report_samples'):
        picture = np.asarray(Image.open(two_d_run / 'images' / f'{name}_0000030.png'))
        assert picture.ndim in (2, 3) and min(picture.shape[:2]) > 50, name
    # The training metrics are left as they were.
    rows = [json.loads(l) for l in (two_d_run / 'metrics.jsonl').read_text().splitlines()]
    assert all(r['split'] in ('train', 'eval') for r in rows)


def test_holdout_class_is_left_out_of_training(tfds_dir):
    from vae_jax.data.registry import make_sources
    config = tiny_config(tfds_dir, **{'data.holdout_class': 3})
    train_source, eval_source = make_sources(config.data, config.seed)
    labels = train_source.get_batch(np.arange(train_source.num_examples))['label']
    assert 3 not in labels and train_source.num_examples < 2048
    assert 3 in eval_source.get_batch(np.arange(200))['label']


def test_eval_mode_through_launch(two_d_run, tmp_path):
    """On a copy whose newest checkpoint (step 40) is damaged: eval falls back to step 30."""
    run = tmp_path / 'run'
    shutil.copytree(two_d_run, run)
    shutil.copytree(run / 'checkpoints' / '30', run / 'checkpoints' / '40')
    victim = max((p for p in (run / 'checkpoints' / '40').rglob('*') if p.is_file()),
                 key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])  # a torn write
    result = launch('--mode=eval', f'--workdir={run}', '--iwae_samples=5',
                    '--eval_examples=100')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'IWAE k=5' in result.stderr and 'ETA' in result.stderr
    assert 'checkpoint of step 40' in result.stderr and 'skipped' in result.stderr
    assert 'Traceback' not in result.stderr  # orbax's abandoned reads are not echoed
    assert (run / 'results' / 'eval_0000030.json').is_file()
    assert (run / 'checkpoints' / '40').is_dir()  # eval moves nothing of a (maybe live) run
    bad = launch('--mode=eval', f'--workdir={two_d_run / "nothing"}')
    assert bad.returncode == 2 and 'not a vae_jax run' in bad.stderr
