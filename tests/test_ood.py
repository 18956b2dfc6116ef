"""OOD scores on synthetic data with known answers, and the command on a trained run."""

import json

import numpy as np
import pytest

from vae_jax.evaluate import ood
from vae_jax.evaluate.downstream import auroc


def _bernoulli_images(rng, p, n, shape=(28, 28, 1)):
    return (rng.random((n, *shape)) < p).astype(np.float32)


def _bernoulli_nll(x, p):
    """Exact −log p(x) of i.i.d. Bernoulli(p) pixels: [n, ...] -> [n]."""
    ones = x.reshape(len(x), -1).sum(1)
    return -(ones * np.log(p) + (x[0].size - ones) * np.log(1 - p))


def test_the_likelihood_fails_where_typicality_and_complexity_succeed():
    """In: i.i.d. Bernoulli(0.3) pixels, scored by their exact model. Out: sparser Bernoulli(0.1)
    images and blank images, both *more* likely under it (a 0 pixel is likelier than a 1), as
    Nalisnick et al.'s MNIST under a Fashion-MNIST model."""
    rng = np.random.default_rng(0)
    inside = _bernoulli_images(rng, 0.3, 300)
    train_mean = float(_bernoulli_nll(_bernoulli_images(rng, 0.3, 300), 0.3).mean())
    for outside in (_bernoulli_images(rng, 0.1, 300), np.zeros((300, 28, 28, 1), np.float32)):
        s_in, s_out = (ood.anomaly_scores(_bernoulli_nll(x, 0.3), train_nll_mean=train_mean,
                                          png=np.array([ood.png_nats(i) for i in x]))
                       for x in (inside, outside))
        assert auroc(s_in['likelihood'], s_out['likelihood']) < 0.01   # the failure
        assert auroc(s_in['typicality'], s_out['typicality']) > 0.99   # atypically likely
        assert auroc(s_in['complexity'], s_out['complexity']) > 0.99   # simpler than its NLL says
        assert 'likelihood_ratio' not in s_in


def test_png_length_orders_images_by_complexity():
    rng = np.random.default_rng(1)
    blank = np.zeros((28, 28, 1), np.float32)
    stripes = np.tile(np.arange(28)[None, :, None] % 2, (28, 1, 1)).astype(np.float32)
    noise = _bernoulli_images(rng, 0.5, 1)[0]
    lengths = [ood.png_nats(x) for x in (blank, stripes, noise)]
    assert lengths[0] < lengths[1] < lengths[2]
    assert lengths[2] > 784 * np.log(2)  # incompressible bits cost at least a bit each


def test_likelihood_ratio_cancels_what_the_background_model_also_sees():
    """−log p = low-level part + semantic part; the background model sees the low-level part
    only. Out has a simpler low level (likelier) but foreign content: the likelihood ranks it
    in-distribution, the ratio removes the low level and ranks it out."""
    rng = np.random.default_rng(2)
    n = 500
    low_in, low_out = rng.normal(300, 20, n), rng.normal(200, 20, n)
    sem_in, sem_out = rng.normal(20, 3, n), rng.normal(60, 3, n)
    bg_in, bg_out = low_in + 5 + rng.normal(0, 2, n), low_out + 5 + rng.normal(0, 2, n)
    s_in = ood.anomaly_scores(low_in + sem_in, train_nll_mean=320.0, png=np.zeros(n),
                              nll_background=bg_in)
    s_out = ood.anomaly_scores(low_out + sem_out, train_nll_mean=320.0, png=np.zeros(n),
                               nll_background=bg_out)
    assert auroc(s_in['likelihood'], s_out['likelihood']) < 0.05
    assert auroc(s_in['likelihood_ratio'], s_out['likelihood_ratio']) > 0.99
    np.testing.assert_array_equal(s_in['likelihood_ratio'], low_in + sem_in - bg_in)


def test_ood_command_on_trained_runs(tfds_dir, tiny_mnist_config, tmp_path_factory):
    from vae_jax import train
    from vae_jax.errors import UserError
    run_dir, bg_dir = tmp_path_factory.mktemp('ood'), tmp_path_factory.mktemp('ood_bg')
    train.train_and_evaluate(tiny_mnist_config(tfds_dir, **{'data.holdout_class': 3}), run_dir)
    train.train_and_evaluate(tiny_mnist_config(tfds_dir, **{'data.train_perturb': 0.2}), bg_dir)
    results = ood.evaluate_ood(str(run_dir), str(bg_dir), examples=60, k=4, train_examples=50)
    saved = json.loads((run_dir / 'results' / 'eval_0000020.json').read_text())
    assert saved['ood'] == json.loads(json.dumps(results))
    assert set(results['settings']) == {'ood_fashion_mnist', 'heldout_class'}
    for section in results['settings'].values():
        assert set(section) == set(ood.SCORES)
        for r in section.values():
            assert 0 <= r['auroc'] <= 1 and r['num_in'] == 60
    assert results['settings']['heldout_class']['likelihood']['num_out'] == 60
    assert (run_dir / 'images' / 'ood_heldout_class_0000020.png').stat().st_size > 0
    with pytest.raises(UserError, match='must model the same data'):
        other = tmp_path_factory.mktemp('grey')
        train.train_and_evaluate(tiny_mnist_config(tfds_dir, **{
            'data.binarize': 'none', 'model.likelihood': 'gaussian', 'num_steps': 2}), other)
        ood.evaluate_ood(str(run_dir), str(other), examples=10, k=2, train_examples=10)


def test_perturbed_pixels_are_fixed_noise_at_the_rate():
    from vae_jax.data.subsets import PerturbedPixels

    class Grey:
        num_examples, example_shape, num_classes = 50, (10, 10, 1), 0

        def get_batch(self, indices):
            n = len(indices)
            return {'image': np.full((n, 10, 10, 1), 0.25, np.float32),
                    'label': np.zeros(n, np.int32)}

    class Blank(Grey):
        def get_batch(self, indices):
            batch = super().get_batch(indices)
            return dict(batch, image=np.zeros_like(batch['image']))

    grey = PerturbedPixels(Grey(), 0.3).get_batch(np.arange(50))['image']
    changed = grey != 0.25
    assert abs(changed.mean() - 0.3) < 0.03                        # 5,000 pixels
    np.testing.assert_array_equal(PerturbedPixels(Grey(), 0.3).get_batch([7, 2])['image'],
                                  grey[[7, 2]])                      # fixed per example
    binary = PerturbedPixels(Blank(), 0.3).get_batch(np.arange(50))['image']
    assert set(np.unique(binary)) == {0.0, 1.0}                     # binary data: random bits
    assert abs(binary.mean() - 0.15) < 0.02                          # half the noise is a 1
