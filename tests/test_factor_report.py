"""Disentanglement metrics at the end of a run and in --mode=eval, on procedural dSprites."""

import json

import numpy as np
import pytest

from vae_jax import base_config, train
from vae_jax.errors import UserError
from vae_jax.evaluate import factor_report


def tiny_dsprites_config():
    c = base_config()
    c.data.name = 'dsprites'
    c.model.hidden = (32,)
    c.model.latents = 4
    c.batch_size = 32
    c.num_steps = 6
    c.log_every = 3
    c.eval_every = 6
    c.checkpoint_every = 6
    c.eval_batch_size = 100
    c.eval_examples = 200
    d = c.disentanglement
    d.num_train, d.num_test, d.num_variance_estimate, d.batch_size = 60, 40, 200, 16
    return c


def test_finished_run_has_metrics_in_results_json_and_tensorboard(tensorboard_tags, tmp_path):
    config = tiny_dsprites_config()
    train.train_and_evaluate(config, tmp_path)
    path = tmp_path / 'results' / 'eval_0000006.json'
    results = json.loads(path.read_text())
    scores = factor_report.flat_scores(results['disentanglement'])
    assert {'beta_vae/eval_accuracy', 'factor_vae/eval_accuracy', 'mig/mig',
            'dci/disentanglement', 'dci/completeness', 'sap/sap'} <= set(scores)
    assert all(np.isfinite(v) for v in scores.values())
    assert results['disentanglement']['beta_vae']['num_train'] == 60
    assert len(results['latents']['kl_per_dim']) == 4
    assert {'disentanglement/mig/mig', 'traversal'} <= tensorboard_tags(tmp_path)
    assert (tmp_path / 'images' / 'traversal_0000006.png').is_file()

    # Launching a finished run again neither retrains nor recomputes the metrics.
    before = path.stat().st_mtime_ns
    train.train_and_evaluate(config, tmp_path)
    assert path.stat().st_mtime_ns == before

    # --mode=metrics recomputes them on demand: the same scores (seeded), other results kept.
    path.write_text(json.dumps({'step': 6, 'likelihood': {'nll': 1.0}}))
    again = factor_report.evaluate_workdir(tmp_path)
    assert factor_report.flat_scores(again['disentanglement']) == scores
    assert json.loads(path.read_text())['likelihood'] == {'nll': 1.0}


def test_runs_without_factors_get_no_metrics(tmp_path):
    config = tiny_dsprites_config()
    config.data.name = 'toy2d'
    config.data.toy_examples = 500
    train.train_and_evaluate(config, tmp_path)
    assert not (tmp_path / 'results').exists()
    with pytest.raises(UserError, match='no ground-truth factors'):
        factor_report.evaluate_workdir(tmp_path)
