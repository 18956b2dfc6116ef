"""train_and_evaluate on real MNIST: resume equality, outputs, divergence, bad input."""

import json

import jax
import numpy as np
import pytest

from vae_jax import train
from vae_jax.data import pipeline, registry
from vae_jax.errors import UserError


class Interrupted(Exception):
    pass


FACTOR_VAE = {'objective.name': 'factor_vae', 'objective.gamma': 6.4,
              'objective.kl_warmup_steps': 0, 'discriminator.hidden': (32, 32)}


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tfds_dir, tiny_mnist_config,
                                                               tmp_path, monkeypatch):
    """On MNIST with dynamic binarization, a cosine schedule and FactorVAE, whose second
    optimizer's state must be checkpointed too (kill -9 and SIGTERM: test_reliability.py)."""
    overrides = FACTOR_VAE
    config = tiny_mnist_config(tfds_dir, **overrides)
    full = train.train_and_evaluate(config, tmp_path / 'full')

    real_batches = pipeline.train_batches

    def crashing_batches(*args, **kwargs):  # the process dies at step 14, after the step-10 save
        for i, batch in enumerate(real_batches(*args, **kwargs)):
            if i == 14:
                raise Interrupted
            yield batch

    monkeypatch.setattr(pipeline, 'train_batches', crashing_batches)
    with pytest.raises(Interrupted):
        train.train_and_evaluate(config, tmp_path / 'resumed')
    monkeypatch.setattr(pipeline, 'train_batches', real_batches)
    resumed = train.train_and_evaluate(config, tmp_path / 'resumed')

    assert int(resumed.step) == int(full.step) == 20
    assert len(jax.tree.leaves(full)) == len(jax.tree.leaves(resumed))
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    if overrides:
        assert full.aux is not None and int(full.aux.step) == 20
    # The resumed run's metrics read as one run: every logged step once, identical values.
    lines = [json.loads(l) for l in (tmp_path / 'resumed' / 'metrics.jsonl').read_text().splitlines()]
    ref = [json.loads(l) for l in (tmp_path / 'full' / 'metrics.jsonl').read_text().splitlines()]
    assert [(l['step'], l['split']) for l in lines] == [(l['step'], l['split']) for l in ref]
    assert lines[-1] == ref[-1]


def test_run_writes_metrics_events_images_config_checkpoints(tfds_dir, tiny_mnist_config,
                                                             tensorboard_tags, tmp_path):
    config = tiny_mnist_config(tfds_dir, **{'model.conditional': True, 'keep_checkpoints': 1})
    train.train_and_evaluate(config, tmp_path)
    rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    evals = [r for r in rows if r['split'] == 'eval']
    assert [r['step'] for r in evals] == [10, 20]
    assert all(np.isfinite(r['neg_elbo']) and r['neg_elbo'] > 0 for r in evals)
    assert abs(evals[-1]['neg_elbo'] - evals[-1]['recon'] - evals[-1]['kl']) < 1e-3
    train_rows = [r for r in rows if r['split'] == 'train']
    assert [r['beta'] for r in train_rows][0] < 1.0  # the KL warm-up is on
    assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['20']
    tags = tensorboard_tags(tmp_path)
    assert {'train/loss', 'eval/neg_elbo', 'samples', 'reconstructions'} <= tags
    assert json.loads((tmp_path / 'config.json').read_text())['model']['conditional'] is True
    from PIL import Image
    samples = Image.open(tmp_path / 'images' / 'samples_0000020.png')
    assert samples.size == (8 * 29 + 1, 10 * 29 + 1)  # CVAE: one row of 8 samples per class
    recon = np.asarray(Image.open(tmp_path / 'images' / 'reconstructions_0000020.png'))
    assert recon.shape == (2 * 29 + 1, 8 * 29 + 1)


def test_non_finite_loss_stops_without_checkpointing_it(tfds_dir, tiny_mnist_config, tmp_path,
                                                        monkeypatch):
    # binarizing would hide the NaN
    config = tiny_mnist_config(tfds_dir, **{'data.binarize': 'none'})
    real = registry.train_and_evals

    def poisoned_sources(*args):
        source, eval_source = real(*args)
        get_batch, calls = source.get_batch, []

        def get(indices):  # batches from the 13th on contain a NaN pixel
            calls.append(1)
            batch = get_batch(indices)
            if len(calls) >= 13:
                batch['image'][0, 0, 0, 0] = np.nan
            return batch
        source.get_batch = get
        return source, eval_source

    monkeypatch.setattr(train, 'train_and_evals', poisoned_sources)
    with pytest.raises(train.TrainingDiverged, match='at step 13;.*checkpoint of step 10 is kept'):
        train.train_and_evaluate(config, tmp_path)
    assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['10']


@pytest.mark.parametrize('override,message', [
    ({'data.name': 'cifar10'}, 'unknown data.name'),
    ({'model.encoder': 'resnet'}, 'unknown model.encoder'),
    ({'model.likelihood': 'poisson'}, 'unknown model.likelihood'),
    ({'objective.beta': -1.0}, 'beta must be >= 0'),
    ({'model.latents': 0}, 'latents must be positive'),
    ({'batch_size': 30}, 'not divisible by the 4 devices'),
    ({'data.data_dir': '/nonexistent/tfds'}, '/nonexistent/tfds'),
])
def test_bad_input_is_one_user_error_and_leaves_workdir_untouched(tfds_dir, tiny_mnist_config,
                                                                  tmp_path, override, message):
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'keep.txt').write_text('precious')
    with pytest.raises(UserError, match=message):
        train.train_and_evaluate(tiny_mnist_config(tfds_dir, **override), tmp_path)
    assert sorted(p.name for p in tmp_path.rglob('*')) == ['checkpoints', 'keep.txt']


def test_workdir_that_is_a_file(tfds_dir, tiny_mnist_config, tmp_path):
    f = tmp_path / 'run'
    f.write_text('not a directory')
    with pytest.raises(UserError, match='not a directory'):
        train.train_and_evaluate(tiny_mnist_config(tfds_dir), f)
    assert f.read_text() == 'not a directory'
