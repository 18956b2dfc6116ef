"""Fréchet distance and precision/recall against closed forms and scipy; the cached feature
classifier; the command on a trained run."""

import json

import numpy as np
import pytest
import scipy.linalg

from vae_jax.errors import UserError
from vae_jax.evaluate import classifier, sample_quality as sq


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_against_scipy_and_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = _spd(rng, 6), _spd(rng, 6)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert sq.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)
    # Diagonal covariances: Σ_i (√a_i − √b_i)² + ||Δμ||².
    a, b = rng.random(5) + 0.1, rng.random(5) + 0.1
    closed = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1[:5] - mu2[:5]) ** 2)
    assert sq.frechet_distance(mu1[:5], np.diag(a), mu2[:5], np.diag(b)) == pytest.approx(closed)
    # A set against itself: 0 (up to round-off), also for a rank-deficient covariance.
    f = rng.normal(size=(50, 80))  # 50 samples in 80 dimensions: singular covariance
    assert abs(sq.frechet_distance(*sq.gaussian_stats(f), *sq.gaussian_stats(f))) < 1e-5  # tr ~80
    # From samples of two Gaussians, the estimate approaches the distance of the Gaussians.
    x = rng.multivariate_normal(mu1[:3], s1[:3, :3], size=200_000)
    y = rng.multivariate_normal(mu2[:3], s2[:3, :3], size=200_000)
    exact = sq.frechet_distance(mu1[:3], s1[:3, :3], mu2[:3], s2[:3, :3])
    assert sq.frechet_distance(*sq.gaussian_stats(x), *sq.gaussian_stats(y)) == pytest.approx(
        exact, rel=0.02)


def test_precision_recall_on_known_supports():
    rng = np.random.default_rng(1)
    real = rng.random((3000, 2))
    assert sq.precision_recall(real, real) == {'precision': 1.0, 'recall': 1.0}
    far = sq.precision_recall(real, real + 10.0)
    assert far == {'precision': 0.0, 'recall': 0.0}
    # Generated samples cover the left half of the real square: every sample is realistic
    # (precision ~1), half of the real data is covered (recall ~0.5).
    half = rng.random((3000, 2)) * np.array([0.5, 1.0])
    pr = sq.precision_recall(real, half)
    assert pr['precision'] > 0.97 and 0.45 < pr['recall'] < 0.56
    # The brute-force definition on a small case.
    r, f = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    d_rr = np.linalg.norm(r[:, None] - r[None], axis=-1)
    radius = np.sort(d_rr, axis=1)[:, 3]
    want = np.mean([(np.linalg.norm(r - x, axis=1) <= radius).any() for x in f])
    assert sq.precision_recall(r, f, chunk=7)['precision'] == pytest.approx(want)
    with pytest.raises(UserError, match='more than 3 samples'):
        sq.precision_recall(r[:3], f)


@pytest.fixture(scope='module')
def classifier_cache(tmp_path_factory):
    """This file's cache folder: MNIST decoded and the (300-step) feature classifier trained
    once for both tests that need them, and neither written to the session's cache."""
    return tmp_path_factory.mktemp('classifier_cache')


def test_feature_classifier_is_trained_once_and_cached(tfds_dir, classifier_cache, monkeypatch):
    from vae_jax import base_config
    monkeypatch.setenv('VAE_JAX_CACHE', str(classifier_cache))
    monkeypatch.setitem(classifier.RECIPE, 'steps', 300)
    c = base_config()
    c.data.data_dir = tfds_dir  # binarized_mnist: the classifier of binarized MNIST images
    params, info = classifier.feature_extractor(c.data)
    assert info['dataset'] == 'mnist' and info['binary'] and info['version'] == 1
    assert info['test_accuracy'] > 0.9  # 300 steps of batch 128 on the binary draw of MNIST
    files = sorted(p.name for p in classifier_cache.iterdir() if p.name != 'decoded')  # + MNIST
    assert files == ['classifier-mnist-binary-v1.json', 'classifier-mnist-binary-v1.msgpack']
    monkeypatch.setattr(classifier, 'train', lambda *a, **k: pytest.fail('retrained'))
    again, info2 = classifier.feature_extractor(c.data)
    assert info2 == info
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(classifier.features(again, x), classifier.features(params, x))
    assert classifier.features(params, x).shape == (4, classifier.FEATURES)


def test_sample_quality_command_on_a_run(tfds_dir, tiny_mnist_config, tmp_path, monkeypatch,
                                         classifier_cache):
    from vae_jax import train
    monkeypatch.setenv('VAE_JAX_CACHE', str(classifier_cache))
    monkeypatch.setitem(classifier.RECIPE, 'steps', 300)
    train.train_and_evaluate(tiny_mnist_config(tfds_dir, num_steps=10), tmp_path)
    results = sq.score_run(str(tmp_path), temperatures=(1.0, 0.5), samples=400)
    saved = json.loads((tmp_path / 'results' / 'eval_0000010.json').read_text())
    assert saved['sample_quality'] == json.loads(json.dumps(results))
    assert results['binary'] and results['samples'] == 400
    floor = results['train_vs_test']
    # Ten steps of a tiny VAE are far from data: its samples are worse than training images.
    for t in ('1', '0.5'):
        r = results['temperatures'][t]
        assert r['frechet_distance'] > floor['frechet_distance'] + 5
        assert 0 <= r['precision'] <= 1 and 0 <= r['recall'] <= 1
    assert floor['precision'] > 0.5 and floor['recall'] > 0.5
    with pytest.raises(UserError, match='--temperatures'):
        sq.score_run(str(tmp_path), temperatures=(0.0,))
