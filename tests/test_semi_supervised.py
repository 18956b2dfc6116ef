"""M2's labelled and unlabelled losses against a hand computation; a short run end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import model_fns
from vae_jax.evaluate import semi_supervised as ssl
from vae_jax.keys import example_keys


def _model():
    fns = model_fns.build(ssl.model_config(latents=3, hidden=16), (4, 4, 1), 5)
    params = fns.module.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)),
                             jnp.zeros((1,), jnp.int32))['params']
    return fns, params


def _hand_labelled(fns, params, x, y, key):
    """−log p(x | y, z) + KL(N(μ, σ²) || N(0, I)) + log K in numpy, z = μ + σ ε."""
    mean, logvar = (np.asarray(a, np.float64)[0] for a in fns.encode(params, x[None], y[None]))
    eps = np.asarray(jax.random.normal(key, (3,)), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    logits = np.asarray(fns.decode(params, jnp.asarray(z[None], jnp.float32), y[None]),
                        np.float64).reshape(-1)  # [1, 4, 4, 1, 1]: one logit per pixel
    xs = np.asarray(x, np.float64).reshape(-1)
    log_px = np.sum(xs * -np.logaddexp(0, -logits) + (1 - xs) * -np.logaddexp(0, logits))
    kl = 0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar)
    return -log_px + kl + np.log(5)


def test_labelled_and_unlabelled_losses_by_hand():
    fns, params = _model()
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.random((3, 4, 4, 1)) > 0.5).astype(np.float32))
    y = jnp.asarray([0, 4, 2])
    keys = example_keys(jax.random.key(1), jnp.arange(3))
    got = ssl.labelled_loss(params, x, y, keys, fns=fns, num_classes=5)
    want = [_hand_labelled(fns, params, x[i], y[i], keys[i]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    logits = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    got_u = ssl.unlabelled_loss(params, logits, x, keys, fns=fns, num_classes=5)
    q = np.exp(np.asarray(logits, np.float64))
    q /= q.sum(1, keepdims=True)
    for i in range(3):
        per_class = [_hand_labelled(fns, params, x[i], jnp.int32(k),
                                    jax.random.fold_in(keys[i], k)) for k in range(5)]
        want_u = np.sum(q[i] * per_class) + np.sum(q[i] * np.log(q[i]))  # − H(q)
        assert float(got_u[i]) == pytest.approx(want_u, rel=1e-5)


def test_m2_learns_from_few_labels(tfds_dir):
    """200 steps with 10 labels per class on 2,000 unlabelled images: far above chance."""
    from vae_jax.data.tfds_source import TfdsSource
    from vae_jax.evaluate.augmentation import labelled_subset
    tr = TfdsSource('mnist', 'train[:2000]', tfds_dir).get_batch(np.arange(2000))
    te = TfdsSource('mnist', 'test[:1000]', tfds_dir).get_batch(np.arange(1000))
    idx = labelled_subset(tr['label'], 10, seed=0)
    _, classifier, params, alpha = ssl.train_m2(
        jax.random.key(0), tr['image'][idx], tr['label'][idx], tr['image'], num_classes=10,
        steps=200, batch_size=50, hidden=100, latents=10)
    assert alpha == pytest.approx(0.1 * 2000 / 100)
    assert ssl.test_error(classifier, params, te['image'], te['label']) < 0.5
