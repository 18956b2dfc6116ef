"""Few-label augmentation: the labelled sets, the generators, and the command end to end."""

import json

import jax
import numpy as np
import pytest

from vae_jax.errors import UserError
from vae_jax.evaluate import augmentation as aug


def test_labelled_subset_takes_n_per_class_reproducibly():
    labels = np.repeat(np.arange(4), 50)[np.random.default_rng(0).permutation(200)]
    a = aug.labelled_subset(labels, 7, seed=0)
    assert np.bincount(labels[a]).tolist() == [7, 7, 7, 7] and len(set(a)) == 28
    np.testing.assert_array_equal(a, aug.labelled_subset(labels, 7, seed=0))
    assert not np.array_equal(a, aug.labelled_subset(labels, 7, seed=1))
    with pytest.raises(UserError, match='fewer than 51'):
        aug.labelled_subset(labels, 51, seed=0)


def test_generators_on_a_trained_cvae_and_vae(tfds_dir):
    from vae_jax import base_config, build_model_fns
    from vae_jax.data.tfds_source import TfdsSource
    batch = TfdsSource('mnist', 'train[:600]', tfds_dir).get_batch(np.arange(600))
    x, y = batch['image'], batch['label']
    fns, params = aug.train_cvae(jax.random.key(0), x, y, 10, num_steps=30)
    gx, gy = aug.cvae_samples(fns, params, jax.random.key(1), 3, 10)
    assert gx.shape == (30, 28, 28, 1) and np.bincount(gy).tolist() == [3] * 10
    assert 0 <= gx.min() and gx.max() <= 1
    # Latent mixup of a class with one labelled image: λ z + (1 − λ) z = z, so every mixed
    # example is that image's reconstruction from its posterior mean.
    c = base_config()
    c.model.hidden, c.model.latents = (32,), 4
    vfns = build_model_fns(c.model, (28, 28, 1), 10)
    vparams = vfns.module.init(jax.random.key(2), x[:1])['params']
    one = np.array([np.flatnonzero(y == k)[0] for k in range(10)])
    mx, my = aug.latent_mixup(vfns, vparams, jax.random.key(3), x[one], y[one], 4)
    recon = np.asarray(vfns.decode_mean(vparams, vfns.encode(vparams, x[one])[0]))
    np.testing.assert_allclose(mx, np.repeat(recon, 4, axis=0), atol=1e-6)
    np.testing.assert_array_equal(my, np.repeat(np.arange(10), 4))


def test_augmentation_command(tfds_dir, repo, tmp_path):
    import os
    import subprocess
    import sys
    env = dict(os.environ, TFDS_DATA_DIR=tfds_dir)
    cmd = [sys.executable, '-m', 'vae_jax.evaluate.augmentation', '--dataset=fashion_mnist',
           '--labels=2,4', '--seeds=2', '--generated=3', '--classifier_steps=20',
           '--cvae_steps=10', f'--out={tmp_path}']
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / 'augmentation.json').read_text())
    assert set(summary['results']) == {'real', 'cvae'}  # no --vae: no latent mixup
    for arm in summary['results'].values():
        assert set(arm) == {'2', '4'} and all(len(v) == 2 and all(0 <= a <= 1 for a in v)
                                              for v in arm.values())
    assert (tmp_path / 'augmentation.png').stat().st_size > 0
    assert '| 4 | ' in proc.stdout
    bad = subprocess.run(cmd[:3] + ['--dataset=cifar10', f'--out={tmp_path}'], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --dataset must be one of mnist, fashion_mnist, got 'cifar10'"]
