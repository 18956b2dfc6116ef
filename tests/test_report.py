"""evaluate_run / launch.py --mode=eval on a tiny real run: results JSON, pictures, AUROCs."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sklearn.metrics import roc_auc_score

from vae_jax import load_run, train
from vae_jax.data.registry import train_and_evals
from vae_jax.data.subsets import BinarizedSource
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.evaluate import latents
from vae_jax.evaluate.report import evaluate_run, score_function
from vae_jax.keys import EVAL, run_keys


@pytest.fixture(scope='module')
def two_d_run(tfds_dir, tiny_mnist_config, tmp_path_factory):
    """2 latents (scatter + manifold pictures), trained without digit 3 (held-out AUROC)."""
    workdir = tmp_path_factory.mktemp('report')
    config = tiny_mnist_config(tfds_dir, **{'model.latents': 2, 'data.holdout_class': 3,
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
    assert held['heldout_class'] == 3
    for name in ('report_traversal', 'report_manifold', 'report_latent_scatter',
                 'report_interpolation_slerp', 'report_samples'):
        picture = np.asarray(Image.open(two_d_run / 'images' / f'{name}_0000030.png'))
        assert picture.ndim in (2, 3) and min(picture.shape[:2]) > 50, name
    # The training metrics are left as they were.
    rows = [json.loads(l) for l in (two_d_run / 'metrics.jsonl').read_text().splitlines()]
    assert {r['split'] for r in rows} == {'train', 'eval', 'eval_heldout'}


def _scores(run, source, n, k=100):
    """The anomaly scores of the first n examples, computed here: -IWAE bound (k) of the
    binary draw of the split the model is evaluated on."""
    key = run_keys(run.config.seed)[EVAL]
    batch = BinarizedSource(source, key).get_batch(np.arange(n))
    score, b = score_function(run, key, k), run.config.eval_batch_size  # as the report batches
    return np.concatenate([score(batch['image'][i:i + b], batch['label'][i:i + b])
                           for i in range(0, n, b)]), batch


def test_reported_numbers_are_those_of_the_right_inputs_and_splits(two_d_run):
    """Each number recomputed independently: on binarized inputs (the run trains with
    data.binarize='dynamic'), on the in-distribution split, with held-out class 3 apart."""
    results = json.loads((two_d_run / 'results' / 'eval_0000030.json').read_text())
    run = load_run(two_d_run)
    _, evals = train_and_evals(run.config.data, run.config.seed)
    # Posterior statistics of the binary draw, not of the grayscale images.
    binary = BinarizedSource(evals['eval'], run_keys(run.config.seed)[EVAL])
    post = latents.collect_posteriors(lambda x, y: run.encode(x), binary, max_examples=300)
    gray = latents.collect_posteriors(lambda x, y: run.encode(x), evals['eval'],
                                      max_examples=300)
    np.testing.assert_allclose(results['latents']['mean_of_means'], post['mean'].mean(0),
                               rtol=1e-4, atol=1e-6)
    assert not np.allclose(gray['mean'].mean(0), post['mean'].mean(0), rtol=1e-3)
    # In-distribution and held-out likelihoods are reported apart.
    assert 3 not in post['label']
    assert {'likelihood', 'likelihood_heldout'} <= set(results)
    assert results['likelihood_heldout']['count'] == 300
    # The OOD AUROC on real Fashion-MNIST: MNIST's model finds the clothes far less likely.
    mnist_test = TfdsSource('mnist', 'test', run.config.data.data_dir)
    ood_scores, _ = _scores(run, TfdsSource('fashion_mnist', 'test', run.config.data.data_dir),
                            300)
    in_scores, in_batch = _scores(run, mnist_test, 600)
    in_scores = in_scores[in_batch['label'] != 3][:300]
    want = roc_auc_score(np.r_[np.zeros(300), np.ones(300)], np.r_[in_scores, ood_scores])
    got = results['anomaly']['ood_fashion_mnist']['auroc']
    assert got > 0.8 and abs(got - want) < 0.03, (got, want)
    # The held-out class's AUROC over the whole test split (its first 300 examples).
    scores, batch = _scores(run, mnist_test, 300)
    want = roc_auc_score(batch['label'] == 3, scores)
    np.testing.assert_allclose(results['anomaly']['heldout_class']['auroc'], want, atol=1e-6)


def test_conditional_vae_gets_no_linear_probe(tfds_dir, tiny_mnist_config, tmp_path):
    """A CVAE's posterior reads the label: a probe on it would read the label back."""
    config = tiny_mnist_config(tfds_dir, **{'model.conditional': True, 'num_steps': 4,
                                            'eval_every': 4, 'checkpoint_every': 4})
    train.train_and_evaluate(config, tmp_path)
    results = evaluate_run(tmp_path, iwae_samples=2, max_examples=100)
    assert 'label' in results['linear_probe']['skipped']


def test_holdout_class_is_left_out_of_training_and_of_the_eval_split(tfds_dir,
                                                                     tiny_mnist_config):
    config = tiny_mnist_config(tfds_dir, **{'data.holdout_class': 3})
    train_source, evals = train_and_evals(config.data, config.seed)
    labels = train_source.get_batch(np.arange(train_source.num_examples))['label']
    assert 3 not in labels and train_source.num_examples < 2048
    ins = evals['eval'].get_batch(np.arange(evals['eval'].num_examples))['label']
    held = evals['eval_heldout'].get_batch(np.arange(evals['eval_heldout'].num_examples))['label']
    assert 3 not in ins and set(held) == {3}
    assert len(ins) + len(held) == 10_000 and len(held) == 1010  # MNIST's test 3s


def test_unretrieved_orbax_read_tasks_are_not_logged_once_a_read_failed():
    """asyncio reports a failed task nobody awaited ("Task exception was never retrieved", with
    a traceback) when it is collected, at a time that varies: after a checkpoint read failed,
    those of orbax's abandoned reads are dropped, any other task's still reported."""
    import asyncio
    import gc
    import logging
    from vae_jax import checkpoints
    reported = []
    handler = logging.Handler()
    handler.emit = lambda record: reported.append(record.getMessage())
    logging.getLogger('asyncio').addHandler(handler)
    tasks = {}
    for where in ('/site-packages/orbax/checkpoint/serialization.py', '/elsewhere/user.py'):
        exec(compile("async def read():\n    raise ValueError('torn')\n", where, 'exec'), tasks)
        tasks[where] = tasks.pop('read')

    def run_abandoned(where):
        async def main():
            asyncio.ensure_future(tasks[where]())
            await asyncio.sleep(0.01)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        gc.collect()

    try:
        checkpoints._filter_abandoned_reads()
        run_abandoned('/site-packages/orbax/checkpoint/serialization.py')
        assert reported == []
        run_abandoned('/elsewhere/user.py')
        assert len(reported) == 1 and 'never retrieved' in reported[0]
    finally:
        logging.getLogger('asyncio').removeHandler(handler)


def test_eval_mode_through_launch(two_d_run, launch, tmp_path):
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
    assert 'Traceback' not in result.stderr, result.stderr[-4000:]  # abandoned reads not echoed
    assert (run / 'results' / 'eval_0000030.json').is_file()
    assert (run / 'checkpoints' / '40').is_dir()  # eval moves nothing of a (maybe live) run
    bad = launch('--mode=eval', f'--workdir={two_d_run / "nothing"}')
    assert bad.returncode == 2 and 'not a vae_jax run' in bad.stderr


def test_probe_trains_on_a_uniform_sample_of_a_grid_ordered_dataset():
    """dSprites is stored in grid order: its first 10,000 examples are all squares, which made
    --mode=eval's linear probe fail on a single class."""
    from vae_jax.data.dsprites import DSpritesSource
    from vae_jax.evaluate.report import probe_sample
    grid = DSpritesSource()
    sample = probe_sample(grid, 3000)
    labels = sample.get_batch(np.arange(sample.num_examples))['label']
    assert sample.num_examples == 3000 and set(labels) == {0, 1, 2}
    assert set(grid.get_batch(np.arange(3000))['label']) == {0}  # the prefix it replaces
    assert probe_sample(grid, 0) is grid
