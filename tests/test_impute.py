"""Imputation against a linear-Gaussian model's exact conditional mean, masks, baselines, scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config, build_model_fns
from vae_jax.errors import UserError
from vae_jax.evaluate import impute
from vae_jax.keys import example_keys

SIGMA = 0.5
# x = W z + b + σ ε on 2×2×1 images with z ~ N(0, I_2). W's columns are orthogonal, so the
# exact posterior of a complete image is a diagonal Gaussian a linear encoder can express.
W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.5], [0.0, -1.5]])
B = np.array([0.2, -0.1, 0.3, 0.0])


def linear_gaussian(shift: float = 0.0, logvar_offset: float = 0.0):
    """(fns, params) of the linear-Gaussian model with its exact encoder, or one whose mean is
    off by `shift` and log-variance by `logvar_offset` (a wrong proposal)."""
    c = base_config()
    c.model.hidden, c.model.latents = (), 2
    c.model.likelihood, c.model.gaussian_scale = 'gaussian', SIGMA
    fns = build_model_fns(c.model, (2, 2, 1), 0)
    m = np.diag(W.T @ W) + SIGMA ** 2                  # M = WᵀW + σ²I, diagonal
    gain = W / m                                        # [4, 2]: mean = (x − b) @ W M⁻¹
    kernel = np.concatenate([gain, np.zeros((4, 2))], axis=1)
    bias = np.concatenate([-B @ gain + shift, np.log(SIGMA ** 2 / m) + logvar_offset])
    params = {'encoder': {'Dense_0': {'kernel': kernel, 'bias': bias}},
              'decoder': {'Dense_0': {'kernel': W.T, 'bias': B}}}
    return fns, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def exact_conditional_mean(x: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """E[x_mis | x_obs] of x ~ N(b, WWᵀ + σ²I), observed pixels copied: [4] -> [4]."""
    cov = W @ W.T + SIGMA ** 2 * np.eye(4)
    o, m = observed > 0, observed == 0
    out = x.copy()
    out[m] = B[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)], x[o] - B[o])
    return out


X = np.array([1.3, 0.9, -0.8, 1.1])
MASK = np.array([1.0, 0.0, 0.0, 1.0])  # pixels 1 and 2 missing: each needs the other latent


def _batch(n):
    x = jnp.broadcast_to(jnp.asarray(X, jnp.float32).reshape(1, 2, 2, 1), (n, 2, 2, 1))
    mask = jnp.broadcast_to(jnp.asarray(MASK, jnp.float32).reshape(1, 2, 2, 1), (n, 2, 2, 1))
    return x, mask, example_keys(jax.random.key(0), jnp.arange(n))


def test_exact_conditional_mean_is_not_trivial():
    want = exact_conditional_mean(X, MASK)
    assert abs(want[1] - B[1]) > 0.5 and abs(want[2] - B[2]) > 0.3  # not the mean imputation


# The encoder of complete images is narrower than p(z | x_obs) (half the pixels that inform
# each latent are missing), close to where the weights' variance becomes infinite; proposals
# wider than it, centred (exact mean) or not, converge at the Monte-Carlo rate.
@pytest.mark.parametrize('shift,logvar_offset', [(0.0, 0.7), (0.3, 1.0)])
def test_importance_imputation_converges_to_the_exact_conditional_mean(shift, logvar_offset):
    fns, params = linear_gaussian(shift, logvar_offset)
    x, mask, keys = _batch(1)
    run = jax.jit(lambda x, m, k: impute.importance_impute(fns, params, x, m, None, k,
                                                            num_samples=50_000))
    out = run(x, mask, keys)
    got = np.asarray(out['imputed']).reshape(4)
    np.testing.assert_allclose(got, exact_conditional_mean(X, MASK), atol=0.015)
    # log p(x_obs) of the observed pixels' Gaussian marginal, which the bound approaches.
    cov = W @ W.T + SIGMA ** 2 * np.eye(4)
    o = MASK > 0
    from scipy.stats import multivariate_normal
    exact = multivariate_normal(B[o], cov[np.ix_(o, o)]).logpdf(X[o])
    assert float(out['log_px_obs'][0]) == pytest.approx(exact, abs=0.03)
    assert 5_000 < float(out['ess'][0]) <= 50_000


@pytest.mark.parametrize('sampler', ['pseudo_gibbs', 'metropolis_within_gibbs'])
def test_chains_with_the_exact_posterior_reach_the_exact_conditional_mean(sampler):
    fns, params = linear_gaussian()
    x, mask, keys = _batch(2000)
    fn = getattr(impute, sampler)
    out = jax.jit(lambda x, m, k: fn(fns, params, x, m, None, k, iterations=60, burn_in=20,
                                     fill=0.0))(x, mask, keys)
    got = np.asarray(out['imputed']).reshape(-1, 4).mean(0)  # 2000 independent chains
    np.testing.assert_allclose(got, exact_conditional_mean(X, MASK), atol=0.03)
    if sampler == 'metropolis_within_gibbs':  # q is p(z | x̂): every proposal is accepted
        assert float(jnp.min(out['acceptance'])) > 0.97


def test_metropolis_corrects_a_wrong_proposal_that_biases_pseudo_gibbs():
    fns, params = linear_gaussian(shift=0.3, logvar_offset=0.8)
    x, mask, keys = _batch(2000)
    want = exact_conditional_mean(X, MASK)
    kw = dict(iterations=200, burn_in=50, fill=0.0)
    mwg = jax.jit(lambda x, m, k: impute.metropolis_within_gibbs(fns, params, x, m, None, k, **kw))
    gibbs = jax.jit(lambda x, m, k: impute.pseudo_gibbs(fns, params, x, m, None, k, **kw))
    out = mwg(x, mask, keys)
    got = np.asarray(out['imputed']).reshape(-1, 4).mean(0)
    np.testing.assert_allclose(got, want, atol=0.03)
    assert 0.2 < float(jnp.mean(out['acceptance'])) < 0.95  # proposals are really rejected
    biased = np.asarray(gibbs(x, mask, keys)['imputed']).reshape(-1, 4).mean(0)
    assert np.max(np.abs(biased - want)) > 0.4  # measured: 0.54 and 0.85


def test_metropolis_refuses_a_flow_posterior():
    c = base_config()
    c.model.hidden, c.model.latents, c.model.posterior = (8,), 2, 'iaf'
    fns = build_model_fns(c.model, (2, 2, 1), 0)
    x, mask, keys = _batch(2)
    with pytest.raises(UserError, match='one diagonal Gaussian'):
        impute.metropolis_within_gibbs(fns, None, x, mask, None, keys, iterations=2, burn_in=0)
    with pytest.raises(UserError, match='burn_in'):
        impute.pseudo_gibbs(fns, None, x, mask, None, keys, iterations=2, burn_in=2)


def test_masks():
    keys = example_keys(jax.random.key(1), jnp.arange(200))
    random = np.asarray(impute.make_masks(keys, 'random:0.8', (28, 28, 3)))
    assert random.shape == (200, 28, 28, 3) and set(np.unique(random)) == {0.0, 1.0}
    assert abs(1 - random.mean() - 0.8) < 0.01                      # 156,800 pixels
    assert (random == random[..., :1]).all()                          # a pixel's channels agree
    assert not (random[0] == random[1]).all()                         # each example its own
    block = np.asarray(impute.make_masks(keys[:2], 'block:14', (28, 28, 1)))
    assert block[0].sum() == 28 * 28 - 14 * 14 and block[0, 7:21, 7:21].sum() == 0
    top = np.asarray(impute.make_masks(keys[:1], 'top', (28, 28, 1)))[0, ..., 0]
    assert top[:14].sum() == 0 and top[14:].all()
    bottom = np.asarray(impute.make_masks(keys[:1], 'bottom', (28, 28, 1)))[0, ..., 0]
    np.testing.assert_array_equal(bottom, 1 - top)
    for bad in ('random:1.5', 'random', 'block:2.5', 'top:3', 'left', 'block:40'):
        with pytest.raises(UserError):
            impute.make_masks(keys[:1], bad, (28, 28, 1))


def test_baselines_and_scores_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((7, 4, 4, 1)).astype(np.float32)
    mask = (rng.random((7, 4, 4, 1)) > 0.5).astype(np.float32)
    reference = rng.random((50, 4, 4, 1)).astype(np.float32)
    got = impute.nearest_neighbour_impute(x, mask, reference, chunk=3)
    for i in range(7):
        d = [np.sum(mask[i] * (x[i] - r) ** 2) for r in reference]
        want = np.where(mask[i] > 0, x[i], reference[int(np.argmin(d))])
        np.testing.assert_allclose(got[i], want, rtol=1e-6)
    mean = reference.mean(0)
    np.testing.assert_array_equal(impute.mean_impute(x, mask, mean), np.where(mask > 0, x, mean))
    truth = (x > 0.5).astype(np.float32)
    scores = impute.imputation_scores(truth, x, mask, binary=True)
    missing = mask == 0
    assert scores['missing_pixels'] == missing.sum()
    assert scores['mse'] == pytest.approx(np.mean((x[missing] - truth[missing]) ** 2))
    assert scores['accuracy'] == 1.0  # x thresholded at 0.5 is the truth
    assert 'accuracy' not in impute.imputation_scores(truth, x, mask, binary=False)


# -- the command on a trained run ---------------------------------------------------------------
@pytest.fixture(scope='module')
def mnist_run(tfds_dir, tiny_mnist_config, tmp_path_factory):
    from vae_jax import train
    workdir = tmp_path_factory.mktemp('impute')
    train.train_and_evaluate(tiny_mnist_config(tfds_dir, num_steps=20), workdir)
    return workdir


def test_imputation_command_scores_writes_and_keeps_what_was_there(mnist_run, repo, tfds_dir):
    import json
    import os
    import subprocess
    import sys

    from PIL import Image

    from vae_jax.evaluate import imputation
    path = mnist_run / 'results' / 'eval_0000020.json'
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({'likelihood': {'nll': 1.0}, 'step': 20}))
    settings = imputation.Settings(examples=30, samples=20, iterations=12, burn_in=4,
                                   reference_examples=300, batch_size=16)
    results = imputation.impute_run(str(mnist_run), ['random:0.8', 'top'], settings=settings)
    saved = json.loads(path.read_text())
    assert saved['likelihood'] == {'nll': 1.0}                    # merged, not replaced
    assert saved['imputation'] == json.loads(json.dumps(results))
    assert results['binary'] and results['examples'] == 30 and results['reference_examples'] == 300
    top = results['masks']['top']
    assert list(top) == ['pseudo_gibbs', 'importance', 'metropolis_within_gibbs', 'mean',
                         'nearest_neighbour']                   # pseudo-Gibbs first: warm start
    for method, r in top.items():
        assert r['missing_pixels'] == 30 * 14 * 28 and 0.5 < r['accuracy'] <= 1, method
    assert 0 <= top['metropolis_within_gibbs']['acceptance'] <= 1
    assert 1 <= top['importance']['ess'] <= 20 and top['importance']['log_px_obs'] < 0
    # The mean baseline is the training pixel mean thresholded at 0.5, computed here.
    from vae_jax.data.registry import train_and_evals
    from vae_jax.evaluate.report import as_trained, probe_sample
    from vae_jax.keys import EVAL, run_keys
    run = imputation.load_run(mnist_run)
    key = run_keys(run.config.seed)[EVAL]
    train_source, evals = train_and_evals(run.config.data, run.config.seed)
    ref = probe_sample(as_trained(run, train_source, key), 300).get_batch(np.arange(300))['image']
    truth = as_trained(run, evals['eval'], key).get_batch(np.arange(30))['image'][:, :14]
    want = np.mean((ref.mean(0)[:14] > 0.5) == (truth > 0.5))
    assert top['mean']['accuracy'] == pytest.approx(want)
    picture = np.asarray(Image.open(mnist_run / 'images' / 'impute_top_0000020.png'))
    assert picture.shape[0] > 7 * 56 and picture.shape[2] == 3      # 7 rows of 2×-scaled tiles
    # Bad input: one error line, a non-zero exit, the results file untouched.
    before = path.read_text()
    env = dict(os.environ, TFDS_DATA_DIR=tfds_dir)
    proc = subprocess.run([sys.executable, '-m', 'vae_jax.evaluate.imputation',
                           f'--workdir={mnist_run}', '--masks=top,left'], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: unknown mask 'left': use random:P, block:S, top or bottom"]
    for kw, message in ((dict(methods=['magic']), 'unknown imputation method'),
                        (dict(settings=imputation.Settings(burn_in=500)), '--burn_in')):
        with pytest.raises(UserError, match=message):
            imputation.impute_run(str(mnist_run), ['top'], **kw)
    assert path.read_text() == before
