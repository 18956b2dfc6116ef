"""Disentanglement metrics on a synthetic ground truth whose observation is its factor vector.

So `represent` can be the identity (a perfectly disentangled code), a random rotation or a dense
mixing (every factor loads every code equally: Hadamard rows) of the factors, or noise
independent of them. Sample sizes are reduced so the file runs in seconds.
"""

import json

import joblib
import numpy as np
import pytest
import scipy.stats
from scipy.linalg import hadamard

from vae_jax.evaluate import disentanglement as dis
from vae_jax.evaluate.disentanglement import sampling


class Toy:
    """Uniform independent factors; observation = the factors standardised to mean 0, var 1."""

    def __init__(self, sizes=(3, 6, 10, 8, 8)):
        self.factor_sizes = tuple(sizes)
        self.factor_names = tuple(f'f{i}' for i in range(len(sizes)))

    def sample_factors(self, num, rng):
        return np.stack([rng.integers(s, size=num) for s in self.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, rng):
        s = np.array(self.factor_sizes)
        return ((factors - (s - 1) / 2) / np.sqrt((s**2 - 1) / 12)).astype(np.float32)


def representations(num_factors):
    """identity, rotation (random orthogonal), dense (5 x 8 Hadamard rows) and noise codes."""
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(num_factors, num_factors)))
    dense = hadamard(8)[:num_factors] / np.sqrt(8)
    noise_rng = np.random.default_rng(2)
    return {'identity': lambda x: x, 'rotation': lambda x: x @ rotation,
            'dense': lambda x: x @ dense,
            'noise': lambda x: noise_rng.normal(size=(len(x), num_factors))}


REPS = representations(5)
QUIET = {'progress': None}


# BetaVAE and FactorVAE scores (chance = 1/5). Both barely notice a generic rotation (each
# factor still moves one code most); only dense mixing takes them near chance.

@pytest.mark.parametrize('rep,low,high', [('identity', 0.99, 1.0), ('rotation', 0.5, 0.95),
                                          ('dense', 0.0, 0.4), ('noise', 0.0, 0.35)])
def test_beta_vae(rep, low, high):
    r = dis.beta_vae(Toy(), REPS[rep], np.random.default_rng(0), batch_size=32, num_train=500,
                     num_eval=250, **QUIET)
    assert low <= r['eval_accuracy'] <= high, r


@pytest.mark.parametrize('rep,low,high', [('identity', 0.99, 1.0), ('rotation', 0.5, 0.95),
                                          ('dense', 0.0, 0.45), ('noise', 0.0, 0.35)])
def test_factor_vae(rep, low, high):
    r = dis.factor_vae(Toy(), REPS[rep], np.random.default_rng(0), batch_size=32, num_train=500,
                       num_eval=250, num_variance_estimate=500, **QUIET)
    assert low <= r['eval_accuracy'] <= high, r
    assert r['num_active_dims'] == (8 if rep == 'dense' else 5)


def test_factor_vae_prunes_collapsed_codes():
    # Code 0 is constant up to std 0.01 < 0.05: inactive; the five factor codes still win.
    gt, rng = Toy(), np.random.default_rng(3)
    represent = lambda x: np.concatenate([0.01 * rng.normal(size=(len(x), 1)), x], axis=1)
    r = dis.factor_vae(gt, represent, np.random.default_rng(0), batch_size=16, num_train=200,
                       num_eval=100, num_variance_estimate=200, **QUIET)
    assert r['num_active_dims'] == 5 and r['eval_accuracy'] == 1.0
    assert r['code_to_factor'][1:] == [0, 1, 2, 3, 4]
    collapsed = dis.factor_vae(gt, lambda x: 0.01 * x, np.random.default_rng(0), batch_size=16,
                               num_train=200, num_eval=100, num_variance_estimate=200, **QUIET)
    assert collapsed['num_active_dims'] == 0 and collapsed['eval_accuracy'] == 0.0
    assert 'no active code' in collapsed['note']


def test_factor_vae_votes_closed_form():
    local = np.array([[0.1, 2.0, 3.0], [5.0, 0.2, 9.0], [1.0, 1.0, 0.0], [0.5, 0.1, 9.0]])
    glob = np.array([1.0, 1.0, 1.0])
    votes = dis.factor_vae_votes(local, np.array([0, 1, 1, 1]), glob, np.array([1, 1, 0], bool),
                                 num_factors=2)
    # Code 2 is inactive: point 2's smallest active ratio is code 0 (tie 1.0, 1.0: first).
    np.testing.assert_array_equal(votes, [[1, 0, 0], [1, 2, 0]])
    # Normalising by the global variance changes the winner: ratios 10, 0.02, 3 -> code 1.
    votes = dis.factor_vae_votes(local[:1], np.array([0]), np.array([0.01, 100.0, 1.0]),
                                 np.ones(3, bool), num_factors=1)
    np.testing.assert_array_equal(votes, [[0, 1, 0]])
    r = dis.factor_vae_from_votes(np.array([[8, 1, 0], [2, 5, 0]]), np.array([[3, 1, 1], [1, 3, 1]]))
    assert r['code_to_factor'] == [0, 1, 0]
    assert r['train_accuracy'] == pytest.approx(13 / 16)
    assert r['eval_accuracy'] == pytest.approx(7 / 10)


# MIG.

def test_mutual_info_and_entropy_closed_form():
    np.testing.assert_array_equal(dis.discretize(np.array([[0.0], [0.2], [0.5], [0.9], [1.0]]), 2),
                                  [[1], [1], [2], [2], [2]])
    a = np.array([[0, 0], [0, 0], [0, 1], [1, 1]])
    b = np.array([[0], [0], [1], [1]])
    expected = 0.5 * np.log(4 / 3) + 0.25 * np.log(2 / 3) + 0.25 * np.log(2)
    np.testing.assert_allclose(dis.discrete_mutual_info(a, b), [[expected], [np.log(2)]])
    np.testing.assert_allclose(dis.discrete_entropy(np.array([[0, 0], [1, 0], [2, 1], [3, 1]])),
                               [np.log(4), np.log(2)])


def test_mig_closed_form():
    f = np.array([[i, j] for i in range(2) for j in range(2)] * 5)  # Independent binary factors.
    assert dis.mig_from_codes(f.astype(float), f, 4)['mig'] == pytest.approx(1.0)
    # A redundant code: both codes hold factor 0 (gap 0), none holds factor 1 (gap 0).
    assert dis.mig_from_codes(f[:, [0, 0]].astype(float), f, 4)['mig'] == pytest.approx(0.0)
    # Code 0 holds both factors (4 levels), code 1 only factor 1: gaps 1 and 0.
    codes = np.stack([f[:, 0] + 2 * f[:, 1], f[:, 1]], axis=1).astype(float)
    r = dis.mig_from_codes(codes, f, 4)
    assert r['per_factor_gap'] == pytest.approx([1.0, 0.0]) and r['mig'] == pytest.approx(0.5)


@pytest.mark.parametrize('rep,low,high', [('identity', 0.9, 1.0), ('rotation', 0.0, 0.3),
                                          ('noise', 0.0, 0.05)])
def test_mig(rep, low, high):
    r = dis.mig(Toy(), REPS[rep], np.random.default_rng(0), num_train=2000, **QUIET)
    assert low <= r['mig'] <= high, r
    if rep == 'identity':  # Each factor's top code is its own.
        assert list(np.argmax(r['mutual_info'], axis=0)) == [0, 1, 2, 3, 4]


# DCI.

def test_dci_from_importance_closed_form():
    assert dis.dci_from_importance(np.eye(3))['disentanglement'] == pytest.approx(1.0)
    assert dis.dci_from_importance(np.eye(3))['completeness'] == pytest.approx(1.0)
    uniform = dis.dci_from_importance(np.ones((4, 3)))
    assert uniform['disentanglement'] == pytest.approx(0.0, abs=1e-9)
    assert uniform['completeness'] == pytest.approx(0.0, abs=1e-9)
    # Two codes share factor 0; factor 1 is unused (zero column: uniform, weight 0).
    r = dis.dci_from_importance(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert r['disentanglement'] == pytest.approx(1.0) and r['completeness'] == pytest.approx(0.0)
    m = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    d = 1 - scipy.stats.entropy(m.T, base=3)
    c = 1 - scipy.stats.entropy(m, base=2)
    r = dis.dci_from_importance(m)
    assert r['disentanglement'] == pytest.approx(np.sum(d * m.sum(1) / m.sum()), abs=1e-8)
    assert r['completeness'] == pytest.approx(np.sum(c * m.sum(0) / m.sum()), abs=1e-8)


@pytest.mark.parametrize('rep,model,low,high', [
    ('identity', 'gbt', 0.95, 1.0), ('dense', 'gbt', 0.0, 0.1), ('noise', 'gbt', 0.0, 0.1),
    ('identity', 'random_forest', 0.95, 1.0), ('dense', 'random_forest', 0.0, 0.1)])
def test_dci(rep, model, low, high):
    gt = Toy((2, 3, 4, 3))  # Few classes: gradient boosting fits 100 trees per class.
    rep_fn = representations(4)[rep]
    r = dis.dci(gt, rep_fn, np.random.default_rng(0), num_train=300, num_test=150, model=model,
                **QUIET)
    assert low <= r['disentanglement'] <= high, r
    assert low <= r['completeness'] <= high, r
    if rep == 'identity':
        assert r['informativeness_test'] > 0.95
        assert list(np.argmax(r['importance_matrix'], axis=0)) == [0, 1, 2, 3]
    if rep == 'noise':  # Chance accuracy is 1/size: mean 0.35 over these factors.
        assert r['informativeness_test'] < 0.55


def test_importance_matrix_parallel_matches_serial():
    rng = np.random.default_rng(0)
    factors = rng.integers(3, size=(200, 2))
    codes = factors + 0.3 * rng.normal(size=(200, 2))
    serial = dis.importance_matrix(codes, factors, codes, factors, model='random_forest',
                                   seeds=[1, 2])
    with joblib.parallel_config(backend='threading'):  # Processes take seconds to start.
        parallel = dis.importance_matrix(codes, factors, codes, factors, model='random_forest',
                                         seeds=[1, 2], n_jobs=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    assert serial[0].shape == (2, 2) and serial[0][0, 0] > 0.9 and serial[0][1, 1] > 0.9
    with pytest.raises(ValueError, match='unknown DCI model'):
        dis.importance_matrix(codes, factors, codes, factors, model='lasso')


# SAP.

def test_sap_closed_form():
    r = dis.sap_from_score_matrix(np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.1]]))
    assert r['sap'] == pytest.approx(0.4) and r['per_factor_gap'] == pytest.approx([0.4, 0.4])
    # Binary factors, one per code: a 1-D linear classifier is exact on its own code and at
    # chance (~0.5) on the other, so SAP ~ 0.5.
    rng = np.random.default_rng(0)
    f_train, f_test = rng.integers(2, size=(400, 2)), rng.integers(2, size=(200, 2))
    r = dis.sap_from_codes(f_train.astype(float), f_train, f_test.astype(float), f_test)
    np.testing.assert_array_equal(np.diag(r['score_matrix']), [1.0, 1.0])
    assert r['sap'] == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize('rep,low,high', [('identity', 0.12, 1.0), ('rotation', 0.0, 0.08),
                                          ('noise', 0.0, 0.03)])
def test_sap(rep, low, high):
    # A 1-D linear classifier only separates a many-valued factor's extremes, so even the
    # identity scores ~0.2 (disentanglement_lib's SAP on dSprites is of that order too).
    r = dis.sap(Toy(), REPS[rep], np.random.default_rng(0), num_train=1000, num_test=500,
                **QUIET)
    assert low <= r['sap'] <= high, r


# Sampling, determinism and the entry point.

def test_encode_groups_chunks_and_progress():
    gt, sizes, lines = Toy(), [], []

    def represent(x):
        sizes.append(len(x))
        return x

    factors = gt.sample_factors(10 * 48, np.random.default_rng(0)).reshape(10, 48, 5)
    var = lambda c: np.var(c, axis=1)
    small = sampling.encode_groups(gt, represent, factors, None, var, chunk=32,
                                   progress=lines.append, name='t', unit='groups')
    assert max(sizes) <= 32 and len(sizes) == 20  # One group of 48 needs 2 calls.
    sizes.clear()
    large = sampling.encode_groups(gt, represent, factors, None, var, chunk=100)
    assert sizes == [96] * 5  # Two groups per call.
    np.testing.assert_allclose(small, large)
    observations = gt.sample_observations_from_factors(factors, None).astype(np.float64)
    np.testing.assert_allclose(small, np.var(observations, axis=1))
    assert lines[-1].startswith('t: 10/10 groups') and 'ETA 0 s' in lines[-1]


SMALL = dict(num_train=300, num_test=150, batch_size=16, num_variance_estimate=300)


class UniqueToy(Toy):
    """Toy with the declaration that each factor combination has one observation."""
    unique_observations = True


def test_memoized_encodes_each_combination_once_with_the_same_codes():
    gt, calls = UniqueToy((3, 4, 5)), []
    weights = np.random.default_rng(1).normal(size=(3, 2))

    def represent(x):
        # Each row's code in a fixed order of adds, whatever the batch: the memo encodes other
        # batches than the plain path, and a BLAS matmul may round a row differently by batch
        # size (it did, in the last bit, on a CI machine), which is not what is tested here.
        calls.append(len(x))
        return np.tanh((x[:, :, None] * weights).sum(axis=1))

    memo = sampling.memoize(gt, represent)
    assert isinstance(memo, sampling.Memoized)
    rng = np.random.default_rng(0)
    factors = gt.sample_factors(40 * 6, rng).reshape(40, 6, 3)  # 240 draws of 60 combinations
    var = lambda c: np.var(c, axis=1)
    plain = sampling.encode_groups(gt, represent, factors, None, var, chunk=4)
    calls.clear()
    once = sampling.encode_groups(gt, memo, factors, None, var, chunk=4)
    np.testing.assert_array_equal(once, plain)
    distinct = len(np.unique(np.ravel_multi_index(tuple(factors.reshape(-1, 3).T), (3, 4, 5))))
    assert sum(calls) == distinct == memo.encoded < memo.requested == 240
    assert max(calls) == 4  # a group of 6 with more than 4 unseen is encoded in two calls
    # A second pass draws nothing new: no encoder calls, the same codes.
    calls.clear()
    np.testing.assert_array_equal(sampling.encode_groups(gt, memo, factors, None, var, chunk=4),
                                  plain)
    assert calls == [] and memo.encoded == distinct
    # Called on observations it is the representation itself.
    x = gt.sample_observations_from_factors(factors[0], None)
    np.testing.assert_array_equal(memo(x), represent(x))


def test_memoize_applies_only_to_one_observation_per_combination(monkeypatch):
    represent = REPS['identity']
    assert sampling.memoize(Toy(), represent) is represent  # no declaration
    gt = UniqueToy()
    with pytest.raises(ValueError, match='another ground truth'):
        sampling.encode_groups(Toy(), sampling.memoize(gt, represent),
                               np.zeros((1, 1, 5), np.int64), None, lambda c: c[:, 0])
    # A grid whose table could not fit even at d = 1 is not memoized at all ...
    combinations = int(np.prod(gt.factor_sizes))
    monkeypatch.setattr(sampling, 'MEMO_MAX_BYTES', combinations * 8 - 1)
    assert sampling.memoize(gt, represent) is represent
    # ... and a table of these 5-dimensional codes over it is not kept: every draw is encoded.
    monkeypatch.setattr(sampling, 'MEMO_MAX_BYTES', combinations * 8 * 2)
    memo = sampling.memoize(gt, represent)
    factors = gt.sample_factors(300, np.random.default_rng(0)).reshape(50, 6, 5)
    var = lambda c: np.var(c, axis=1)
    for _ in range(2):
        np.testing.assert_array_equal(
            sampling.encode_groups(gt, memo, factors, None, var, chunk=16),
            sampling.encode_groups(gt, represent, factors, None, var, chunk=16))
    assert memo.too_large and memo.table is None and memo.encoded == memo.requested == 600


def test_compute_metrics_memoized_or_not_gives_the_same_results():
    gt, rep = UniqueToy(), REPS['rotation']
    lines = []
    names = ('beta_vae', 'factor_vae', 'mig', 'sap')  # DCI samples its codes as SAP does
    memo = dis.compute_metrics(gt, rep, names, seed=3, progress=lines.append, **SMALL)
    every = dis.compute_metrics(gt, rep, names, seed=3, progress=lambda line: None,
                                memoize=False, **SMALL)
    drop = lambda r: {m: {k: v for k, v in d.items() if k != 'wall_time_s'} for m, d in r.items()}
    assert drop(memo) == drop(every)
    [line] = [line for line in lines if line.startswith('encoded ')]
    assert line.endswith('the metrics drew')


def test_compute_metrics_deterministic_and_independent_of_other_metrics():
    gt, rep = Toy(), REPS['rotation']
    lines = []
    both = dis.compute_metrics(gt, rep, ('mig', 'beta_vae', 'sap'), seed=5, progress=lines.append,
                               **SMALL)
    alone = dis.compute_metrics(gt, rep, ('sap',), seed=5, progress=lines.append, **SMALL)
    again = dis.compute_metrics(gt, rep, ('beta_vae',), seed=5, progress=lines.append, **SMALL)
    other = dis.compute_metrics(gt, rep, ('sap',), seed=6, progress=lines.append, **SMALL)
    assert both['sap']['score_matrix'] == alone['sap']['score_matrix']
    assert both['beta_vae']['eval_accuracy'] == again['beta_vae']['eval_accuracy']
    assert both['sap']['score_matrix'] != other['sap']['score_matrix']
    assert any(line.startswith('beta_vae: ') and 'ETA' in line for line in lines)
    assert all(result['wall_time_s'] >= 0 for result in both.values())
    json.dumps(both)


def test_compute_metrics_all_names_json_and_unknown_name():
    r = dis.compute_metrics(Toy((2, 3, 2)), representations(3)['identity'],
                            progress=lambda line: None, dci_model='random_forest', **SMALL)
    assert set(r) == set(dis.METRIC_NAMES)
    json.loads(json.dumps(r))
    assert r['factor_vae']['eval_accuracy'] == 1.0 and r['dci']['disentanglement'] > 0.9
    with pytest.raises(ValueError, match='unknown metrics'):
        dis.compute_metrics(Toy(), REPS['identity'], ('beta_vae', 'irs'))


def test_factors_are_fitted_largest_first_and_returned_in_their_own_order():
    assert dis.fit_order([3, 6, 40, 32, 32]) == [2, 3, 4, 1, 0]
    assert dis.fit_order([2, 2, 5]) == [2, 0, 1]  # ties keep the factors' order
    rng = np.random.default_rng(1)
    factors = np.stack([rng.integers(2, size=150), rng.integers(5, size=150),
                        rng.integers(3, size=150)], axis=1)
    codes = factors[:, ::-1] + 0.3 * rng.normal(size=(150, 3))  # code j holds factor 2 - j
    lines = []
    importance, train_acc, test_acc = dis.importance_matrix(
        codes, factors, codes, factors, model='random_forest', seeds=[1, 2, 3],
        progress=lines.append)
    for k in range(3):  # column k is factor k's own classifier, fitted alone
        alone = dis.importance_matrix(codes, factors[:, k:k + 1], codes, factors[:, k:k + 1],
                                      model='random_forest', seeds=[k + 1])
        np.testing.assert_array_equal(importance[:, k], alone[0][:, 0])
        assert train_acc[k] == alone[1][0] and test_acc[k] == alone[2][0]
    assert list(np.argmax(importance, axis=0)) == [2, 1, 0]
    assert [line.split(' (')[0] for line in lines] == [
        'dci: random_forest fitted for factor 2/3', 'dci: random_forest fitted for factor 3/3',
        'dci: random_forest fitted for factor 1/3']


def test_memoized_conv_encoder_on_dsprites_gives_the_codes_of_every_draw():
    # The memo assumes an observation's code does not depend on which others share its
    # encoder call: checked on the family's conv encoder, jitted in calls of ENCODE_BATCH.
    import jax
    import jax.numpy as jnp

    from vae_jax import model_fns
    from vae_jax.configs import dsprites_config
    from vae_jax.data.dsprites import DSpritesSource
    from vae_jax.evaluate.factor_report import representation_function

    fns = model_fns.build(dsprites_config(quick=True).model, (64, 64, 1), 0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))['params']
    represent = representation_function(fns, params)
    gt, names = DSpritesSource(), ('mig', 'sap')
    sizes = dict(num_train=200, num_test=100, progress=None)
    memo = dis.compute_metrics(gt, represent, names, seed=1, **sizes)
    every = dis.compute_metrics(gt, represent, names, seed=1, memoize=False, **sizes)
    assert memo['sap']['score_matrix'] == every['sap']['score_matrix']
    assert memo['mig']['mig'] == every['mig']['mig']
    # The same draws in another order and batch composition: the same codes, bit for bit.
    factors = gt.sample_factors(300, np.random.default_rng(2))
    codes = sampling.memoize(gt, represent).codes_of(np.concatenate([factors[::-1], factors]),
                                                      chunk=1024)
    np.testing.assert_array_equal(codes[300:], represent(gt.sample_observations_from_factors(
        factors, None)))
