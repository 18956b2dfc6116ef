"""AUROC against closed forms and sklearn; the linear probe on synthetic and real MNIST data."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vae_jax.data import TfdsSource
from vae_jax.data.subsets import ClassSubset
from vae_jax.evaluate.downstream import (auroc, class_auroc, heldout_class_auroc,
                                         linear_probe, ood_auroc, probe_posterior_means)


def normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_auroc_identical_distributions_is_chance():
    rng = np.random.default_rng(0)
    # Std of the estimate is sqrt((n_in + n_out + 1) / (12 n_in n_out)) ~= 0.003 here.
    assert auroc(rng.standard_normal(20000), rng.standard_normal(20000)) == pytest.approx(
        0.5, abs=0.012)


@pytest.mark.parametrize('d', [0.5, 1.0, 2.0])
def test_auroc_of_two_gaussians_matches_closed_form(d):
    # s_out - s_in ~ N(d, 2), so P(s_out > s_in) = Phi(d / sqrt(2)).
    rng = np.random.default_rng(1)
    got = auroc(rng.standard_normal(20000), d + rng.standard_normal(20000))
    assert got == pytest.approx(normal_cdf(d / math.sqrt(2.0)), abs=0.012)


def test_auroc_separated_reversed_and_infinite():
    assert auroc([0.0, 1.0, 2.0], [3.0, 4.0]) == 1.0
    assert auroc([3.0, 4.0], [0.0, 1.0, 2.0]) == 0.0
    assert auroc([0.0, 1.0], [np.inf, 5.0]) == 1.0  # A model that finds x impossible.


def test_auroc_ties_count_one_half():
    assert auroc([0.0, 0.0], [0.0, 0.0, 0.0]) == 0.5  # A constant score is chance.
    # Pairs (in, out): (0,1) (0,2) (1,2) win, (1,1) ties -> 3.5 / 4.
    assert auroc([0.0, 1.0], [1.0, 2.0]) == 0.875
    rng = np.random.default_rng(2)
    s_in, s_out = rng.integers(0, 5, 300), rng.integers(1, 6, 200)  # Many ties.
    labels = np.r_[np.zeros(300), np.ones(200)]
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]),
                                               abs=1e-12)


def test_auroc_rejects_nan_and_empty_groups():
    with pytest.raises(ValueError, match='NaN'):
        auroc([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match='both groups'):
        auroc([], [1.0])


class VectorSource:
    """A fixed array of feature vectors with labels, as a `Source`."""

    num_classes = 10

    def __init__(self, points, labels):
        self.points, self.labels = np.asarray(points, np.float32), np.asarray(labels, np.int32)
        self.num_examples, self.example_shape = len(points), self.points.shape[1:]

    def get_batch(self, indices):
        return {'image': self.points[indices], 'label': self.labels[indices]}


def test_ood_and_heldout_class_setups():
    def score(x, y):
        return x[:, 0]

    rng = np.random.default_rng(3)
    normal = VectorSource(rng.standard_normal((3000, 1)), np.zeros(3000))
    shifted = VectorSource(1.0 + rng.standard_normal((2000, 1)), np.zeros(2000))
    result = ood_auroc(score, normal, shifted, batch_size=256)
    assert result['num_in'] == 3000 and result['num_out'] == 2000
    assert result['auroc'] == pytest.approx(normal_cdf(1.0 / math.sqrt(2.0)), abs=0.03)
    assert result['mean_score_out'] > result['mean_score_in']

    # Class 3 scores 10 higher than the rest: perfectly detected. Class 5 is drawn like the
    # other 800 normal examples but scores below the 100 of class 3: 8/9 * 1/2 = 4/9.
    labels = np.arange(1000) % 10
    points = rng.standard_normal((1000, 1)) + 10.0 * (labels == 3)[:, None]
    source = VectorSource(points, labels)
    held = heldout_class_auroc(score, source, heldout_class=3, batch_size=128)
    assert held == class_auroc(source.points[:, 0], labels, 3)
    assert held['auroc'] == 1.0 and held['num_out'] == 100 and held['num_in'] == 900
    assert held['heldout_class'] == 3
    assert heldout_class_auroc(score, source, 5)['auroc'] == pytest.approx(4 / 9, abs=0.1)


def test_class_subset_excludes_the_class():
    labels = np.arange(50) % 10
    subset = ClassSubset(VectorSource(np.arange(50)[:, None], labels), exclude=[3, 7], chunk=16)
    assert subset.num_examples == 40 and subset.num_classes == 10
    batch = subset.get_batch(np.arange(40))
    assert not np.isin(batch['label'], [3, 7]).any()
    np.testing.assert_array_equal(batch['image'][:, 0], np.flatnonzero(~np.isin(labels, [3, 7])))
    with pytest.raises(IndexError):
        subset.get_batch(np.array([40]))


def blobs(rng, n, centers):
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + rng.standard_normal((n, centers.shape[1])), labels


def test_linear_probe_separable_vs_random_labels():
    rng = np.random.default_rng(4)
    centers = 6.0 * rng.standard_normal((3, 8))
    x_train, y_train = blobs(rng, 600, centers)
    x_test, y_test = blobs(rng, 600, centers)
    separable = linear_probe(x_train, y_train, x_test, y_test)
    assert separable['converged'] and separable['test_accuracy'] > 0.98
    assert separable['num_features'] == 8 and separable['num_test'] == 600
    assert separable == linear_probe(x_train, y_train, x_test, y_test)  # Deterministic.

    # Labels independent of the features: chance (0.1), with std ~0.01 over 1000 test points.
    noise = linear_probe(rng.standard_normal((1000, 8)), rng.integers(0, 10, 1000),
                         rng.standard_normal((1000, 8)), rng.integers(0, 10, 1000))
    assert abs(noise['test_accuracy'] - 0.1) < 0.05


def test_linear_probe_on_raw_mnist_pixels(tfds_dir):
    # An identity "encoder" sends the pixels through the same path as posterior means.
    def pixels(x, y):
        flat = x.reshape(len(x), -1)
        return flat, np.zeros_like(flat)

    train = TfdsSource('mnist', 'train[:5000]', tfds_dir)
    test = TfdsSource('mnist', 'test[:1000]', tfds_dir)
    result = probe_posterior_means(pixels, train, test, batch_size=1000)  # C=1, L2.
    assert result['num_train'] == 5000 and result['num_test'] == 1000
    assert result['num_features'] == 784
    assert result['converged'] and result['test_accuracy'] > 0.85  # 0.887 measured.
