"""optim.py's training aids: skipping updates with a too-large gradient (never forever) and the
moving average of the parameters kept in the optimizer state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae_jax import base_config, optim


def test_skip_large_updates_skips_then_applies_clipped_after_max_consecutive():
    inner = optax.sgd(0.1, momentum=0.9)
    tx = optim.skip_large_updates(inner, threshold=10.0, max_consecutive=2)
    params = {'w': jnp.zeros(3)}
    state = tx.init(params)
    small, large = {'w': jnp.array([1.0, 0.0, 0.0])}, {'w': jnp.array([0.0, 100.0, 0.0])}
    ref_state = inner.init(params)
    u, state = tx.update(small, state, params)
    ref_u, ref_state = inner.update(small, ref_state, params)
    np.testing.assert_allclose(u['w'], ref_u['w'])
    for expected_consecutive in (1, 2):  # two large gradients: skipped, momentum untouched
        u, state = tx.update(large, state, params)
        np.testing.assert_array_equal(u['w'], 0.0)
        assert int(state.consecutive) == expected_consecutive
        for a, b in zip(jax.tree.leaves(state.inner), jax.tree.leaves(ref_state)):
            np.testing.assert_array_equal(a, b)
    u, state = tx.update(large, state, params)  # the third in a row: applied at norm 10
    ref_u, _ = inner.update({'w': jnp.array([0.0, 10.0, 0.0])}, ref_state, params)
    np.testing.assert_allclose(u['w'], ref_u['w'], rtol=1e-6)
    assert int(state.consecutive) == 0 and int(state.skipped) == 2
    u, state = tx.update({'w': jnp.array([jnp.nan, 0.0, 0.0])}, state, params)
    assert np.all(np.asarray(u['w']) == 0) and int(state.skipped) == 3  # NaN: always skipped


def test_params_ema_with_its_warm_up_and_eval_params():
    c = base_config().optim
    c.ema_decay, c.learning_rate = 0.5, 0.1
    c.name = 'sgd'
    tx = optim.make_optimizer(c, 10)
    params = {'w': jnp.array([1.0])}
    state = tx.init(params)
    assert optim.eval_params(params, state)['w'] == 1.0
    ema, momentum = 1.0, 0.0
    for t, grad in enumerate((1.0, -2.0, 3.0, 0.5, 1.5, -1.0, 2.0, 0.0, 1.0, 2.0, -3.0)):
        updates, state = tx.update({'w': jnp.array([grad])}, state, params)
        momentum = 0.9 * momentum + grad  # optax.sgd(momentum=0.9): trace
        np.testing.assert_allclose(updates['w'], -0.1 * momentum, rtol=1e-6)
        params = optax.apply_updates(params, updates)
        d = min(0.5, (1 + t) / (10 + t))  # the warm-up of the decay
        ema = d * ema + (1 - d) * float(params['w'][0])
        np.testing.assert_allclose(optim.eval_params(params, state)['w'], ema, rtol=1e-6)
    assert optim.skipped_updates(state) is None
