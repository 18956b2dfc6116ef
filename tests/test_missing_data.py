"""Training on incomplete images: `MissingPixels`, the missing-data IWAE (`missing_iwae`)
against a numpy computation, validation, and a run on real MNIST with half its pixels gone."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config, build_model_fns, configs, objectives
from vae_jax.data.subsets import MissingPixels
from vae_jax.errors import UserError
from vae_jax.keys import example_keys, iwae_sample_key
from vae_jax.objectives.core import Context


class Grey:
    """A source of 64 constant 6×5×1 images (image i = i/64)."""
    num_examples, example_shape, num_classes = 64, (6, 5, 1), 0

    def get_batch(self, indices):
        i = np.asarray(indices)
        return {'image': np.broadcast_to((i / 64.0)[:, None, None, None], (len(i), 6, 5, 1))
                .astype(np.float32), 'label': np.zeros(len(i), np.int32)}


def test_missing_pixels_are_fixed_per_example_and_at_the_rate():
    source = MissingPixels(Grey(), 0.6)
    a = source.get_batch(np.arange(64))['image']
    b = source.get_batch(np.array([5, 3, 5]))['image']
    np.testing.assert_array_equal(np.isnan(b), np.isnan(a[[5, 3, 5]]))  # per index, any batch
    assert abs(np.isnan(a).mean() - 0.6) < 0.05                           # 1,920 pixels
    seen = ~np.isnan(a)
    np.testing.assert_array_equal(a[seen], Grey().get_batch(np.arange(64))['image'][seen])
    assert not (np.isnan(a[0]) == np.isnan(a[1])).all()


def _model():
    c = base_config()
    c.model.hidden, c.model.latents = (16,), 3
    fns = build_model_fns(c.model, (6, 5, 1), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((1, 6, 5, 1)))['params']
    return fns, params


def test_missing_iwae_is_the_bound_of_the_observed_pixels():
    fns, params = _model()
    rng = np.random.default_rng(0)
    x = (rng.random((4, 6, 5, 1)) > 0.5).astype(np.float32)
    seen = rng.random((4, 6, 5, 1)) > 0.4
    x_nan = np.where(seen, x, np.nan).astype(np.float32)
    keys = example_keys(jax.random.key(1), jnp.arange(4))
    k = 3
    ctx = Context(fns=fns, settings={'num_samples': k}, step=jnp.int32(0))
    loss_fn = objectives.get('missing_iwae').loss
    loss, (metrics, _) = jax.jit(lambda p, x, k: loss_fn(p, x, None, k, ctx))(params, x_nan, keys)
    # numpy: the encoder reads zeros at missing pixels; Bernoulli terms of observed pixels only.
    mean, logvar = fns.encode(params, jnp.asarray(np.where(seen, x, 0.0)))
    bounds = []
    for i in range(4):
        log_w = []
        for j in range(k):
            eps = jax.random.normal(iwae_sample_key(keys[i], j), (3,))
            z = mean[i] + jnp.exp(0.5 * logvar[i]) * eps
            logits = np.asarray(fns.decode(params, z[None]))[0, ..., 0].astype(np.float64)
            log_px = np.sum(np.where(seen[i], x[i] * -np.logaddexp(0, -logits)
                                     + (1 - x[i]) * -np.logaddexp(0, logits), 0.0))
            zf, m, lv = (np.asarray(a, np.float64) for a in (z, mean[i], logvar[i]))
            log_pz = -0.5 * np.sum(np.log(2 * np.pi) + zf ** 2)
            log_qz = -0.5 * np.sum(np.log(2 * np.pi) + lv + (zf - m) ** 2 / np.exp(lv))
            log_w.append(log_px + log_pz - log_qz)
        bounds.append(np.logaddexp.reduce(log_w) - np.log(k))
    assert float(loss) == pytest.approx(-np.mean(bounds), rel=1e-5)
    assert float(metrics['observed_fraction']) == pytest.approx(seen.mean())
    # On complete images it is the IWAE bound with the same samples.
    full, _ = objectives.get('missing_iwae').loss(params, x, None, keys, ctx)
    iwae, _ = objectives.get('iwae').loss(params, x, None, keys, ctx)
    assert float(full) == pytest.approx(float(iwae), rel=1e-6)


def test_validation_refuses_missing_pixels_for_other_objectives():
    c = base_config()
    c.data.train_missing = 0.5
    with pytest.raises(UserError, match="cannot train on; use 'missing_iwae'"):
        configs.validate(c)
    c.objective.name = 'missing_iwae'
    configs.validate(c)
    c.data.train_missing = 1.0
    with pytest.raises(UserError, match=r'data.train_missing must be in \[0, 1\)'):
        configs.validate(c)


def test_training_on_half_missing_mnist(tfds_dir, tiny_mnist_config, tmp_path):
    """Dynamic binarization keeps the missing pixels missing; the loss stays finite, and the
    encoder never sees a NaN (the eval on complete test images is finite too)."""
    from vae_jax import train
    c = tiny_mnist_config(tfds_dir, **{'data.train_missing': 0.5, 'objective.name': 'missing_iwae',
                                       'objective.num_samples': 2, 'objective.kl_warmup_steps': 0,
                                       'num_steps': 10})
    train.train_and_evaluate(c, tmp_path)
    rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    trained = [r for r in rows if r['split'] == 'train']
    assert trained and all(np.isfinite(r['loss']) for r in trained)
    assert all(abs(r['observed_fraction'] - 0.5) < 0.05 for r in trained)
    evals = [r for r in rows if r['split'] == 'eval']
    assert evals and all(np.isfinite(r['neg_elbo']) for r in evals)
    # Imputing with it: the encoder reads zeros at missing pixels, as in training.
    from vae_jax.evaluate import imputation
    results = imputation.impute_run(str(tmp_path), ['random:0.5'], ['importance', 'pseudo_gibbs'],
                                    imputation.Settings(examples=8, samples=4, iterations=3,
                                                        burn_in=1, reference_examples=50))
    assert (results['fill'], results['warm_start']) == ('zero', False)
    assert list(results['masks']['random:0.5']) == ['importance', 'pseudo_gibbs']
