"""vdvae.py: the top-down hierarchy's shapes on 28×28, 32×32×3 and 64×64 inputs, its analytic
per-group KL against Monte Carlo, decoding a posterior sample reproducing inference's output,
and, with the training aids on, device-count invariance of the step.

Sizes are the smallest that still exercise each path: XLA:CPU compiles a hierarchy of
convolutions slowly, and every device count and step is a compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config, model_fns, steps
from vae_jax.errors import UserError
from vae_jax.keys import example_keys

TINY = {'model.name': 'vdvae', 'model.vdvae_width': 8, 'model.vdvae_middle': 4,
        'model.vdvae_zdim': 2, 'model.vdvae_min_res': 4, 'model.vdvae_max_latent_res': 8}


def _fns(shape, likelihood='bernoulli', **overrides):
    c = base_config()
    c.update_from_flattened_dict(dict(TINY, **overrides))
    c.model.likelihood = likelihood
    fns = model_fns.build(c.model, shape, 0)
    return fns, fns.module.init(jax.random.key(0), jnp.zeros((2, *shape)))['params']


@pytest.mark.parametrize('shape,stem', [((28, 28, 1), 1), ((28, 28, 1), 2), ((32, 32, 3), 1),
                                        ((64, 64, 1), 2)])
def test_shapes_for_each_input_size(shape, stem):
    """Shapes by tracing alone (`jax.eval_shape`: nothing is compiled or run)."""
    c = base_config()
    c.update_from_flattened_dict(dict(TINY, **{'model.vdvae_stem': stem}))
    c.model.likelihood = 'gaussian' if shape[-1] == 3 else 'bernoulli'
    fns = model_fns.build(c.model, shape, 0)
    x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
    params = jax.eval_shape(lambda x: fns.module.init(jax.random.key(0), x)['params'], x)
    assert fns.module.size == max(32, shape[0]) // stem
    # Latents at 4×4 and 8×8, two groups each of zdim 2, whatever the input size.
    assert fns.groups == (32, 32, 128, 128) and fns.latents == 320
    keys = example_keys(jax.random.key(2), jnp.arange(3))
    out, lat = jax.eval_shape(lambda p, x: fns.infer(p, fns.features(p, x), None, keys),
                              params, x)
    assert out.shape == (3, *shape, 1) and lat.z.shape == lat.kl_per_dim.shape == (3, 320)
    assert lat.kl.shape == lat.log_q.shape == lat.log_p.shape == (3, 4)
    z = jax.eval_shape(lambda p: fns.sample_prior(p, jax.random.key(3), 5, 0.7), params)
    assert z.shape == (5, 320)
    assert jax.eval_shape(lambda p, z: fns.decode_mean(p, z), params, z).shape == (5, *shape)
    assert jax.eval_shape(lambda p, x: fns.encode(p, x)[0], params, x).shape == (3, 320)


def test_kl_is_the_expectation_of_log_q_minus_log_p_and_decode_replays_inference():
    fns, params = _fns((16, 16, 1))
    # Away from the initialisation (the prior blocks start at exactly N(0, I)).
    params = jax.tree.map(lambda p: p + 0.2 * jax.random.normal(jax.random.key(4), p.shape),
                          params)
    x = jnp.broadcast_to(jax.random.bernoulli(jax.random.key(5), 0.4, (1, 16, 16, 1)),
                         (2000, 16, 16, 1)).astype(jnp.float32)
    out, lat = jax.jit(lambda x, k: fns.infer(params, fns.features(params, x), None, k))(
        x, example_keys(jax.random.key(6), jnp.arange(2000)))
    # Group 0's KL is the same for every sample; a lower group's depends on the sample above.
    mc = np.asarray(lat.log_q - lat.log_p)
    np.testing.assert_allclose(mc[:, 0].mean(), lat.kl[0, 0],
                               atol=4 * mc[:, 0].std() / np.sqrt(2000))
    np.testing.assert_allclose(mc.sum(1).mean(), lat.kl.sum(1).mean(),
                               atol=4 * mc.sum(1).std() / np.sqrt(2000))
    np.testing.assert_allclose(np.asarray(lat.kl).sum(1), np.asarray(lat.kl_per_dim).sum(1),
                               rtol=1e-5)
    # Decoding the sample replays the top-down pass: the same output.
    np.testing.assert_allclose(fns.decode(params, lat.z[:8]), out[:8], rtol=1e-4, atol=1e-4)


def test_refuses_a_prior_of_its_own_and_non_images():
    with pytest.raises(UserError, match='own prior'):
        _fns((28, 28, 1), **{'model.prior': 'gaussian_mixture'})
    with pytest.raises(UserError, match='needs images'):
        _fns((2,))


def test_one_step_on_1_and_2_devices():
    """The train step (update skipping and the EMA on) on 1 and 2 devices: the same numbers.
    Bit-identical resume of those optimizer states: tests/test_objective_registry.py's
    'optim:ema_skip' case."""
    c = base_config()
    c.update_from_flattened_dict(dict(TINY, **{
        'model.vdvae_max_latent_res': 4, 'optim.skip_threshold': 1e4,
        'optim.skip_max_consecutive': 2, 'optim.ema_decay': 0.9}))
    shape = (8, 8, 1)
    fns = model_fns.build(c.model, shape, 0)
    state = steps.init_train_state(jax.random.key(0), fns, c, shape, 2)
    rng = np.random.default_rng(0)
    batch = {'image': (rng.random((8, *shape)) < 0.4).astype(np.float32),
             'label': np.zeros(8, np.int32), 'index': np.arange(8, dtype=np.int32)}
    results = []
    for n in (1, 2):
        devices = jax.devices()[:n]
        p_train, _ = steps.pmapped_steps(fns, c, devices)
        sharded = {k: v.reshape(n, 8 // n, *v.shape[1:]) for k, v in batch.items()}
        new, metrics = p_train(steps.replicate(state, devices), sharded, jax.random.key(7),
                               steps.hyperparams(c))
        results.append((steps.unreplicate(new), {k: float(v[0]) for k, v in metrics.items()}))
    (a, ma), (b, mb) = results
    assert 'skipped_updates' in ma and 'kl_group_1' in ma
    for k in ma:
        np.testing.assert_allclose(ma[k], mb[k], rtol=2e-5, atol=1e-5, err_msg=k)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(a.eval_params)[0], jax.tree.leaves(a.params)[0])
