"""The pmapped train/eval steps: device-count invariance, no retracing, keys, binarization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config, keys as keys_lib, model_fns, optim, steps
from vae_jax.data import pipeline
from vae_jax.data.tfds_source import TfdsSource

GLOBAL_BATCH = 16


def _config(encoder='conv'):
    c = base_config()
    c.data.name = 'mnist'
    c.data.binarize = 'dynamic'
    c.model.encoder = encoder
    c.model.hidden = (32,)
    c.model.conv_channels = (8, 16)
    c.model.dense = 32
    c.model.latents = 4
    c.objective.free_bits = 0.05  # exercises the cross-device pmean inside the loss
    return c


@pytest.fixture(scope='module')
def mnist(tfds_dir):
    return TfdsSource('mnist', 'train[:512]', tfds_dir)


def _train(source, config, num_devices, num_steps=3, step_fn=steps.train_step):
    devices = jax.devices()[:num_devices]
    fns = model_fns.build(config.model, source.example_shape, source.num_classes)
    tx = optim.make_optimizer(config.optim, num_steps)
    state = steps.create_train_state(jax.random.key(0), fns, tx, source.example_shape)
    p_train, _ = steps.pmapped_steps(fns, config, devices, step_fn=step_fn)
    rstate = steps.replicate(state, devices)
    losses = []
    batches = pipeline.train_batches(source, seed=1, global_batch=GLOBAL_BATCH, start_step=0,
                                     num_steps=num_steps, local_device_count=num_devices)
    for batch in batches:
        rstate, metrics = p_train(rstate, batch, jax.random.key(7), steps.hyperparams(config))
        losses.append(float(metrics['loss'][0]))
    return steps.unreplicate(rstate), losses


@pytest.mark.parametrize('encoder', ['mlp', 'conv'])
def test_same_global_batch_gives_same_result_on_1_2_4_devices(mnist, encoder):
    assert jax.device_count() >= 4, 'conftest should provide 4 fake CPU devices'
    config = _config(encoder)
    ref_state, ref_losses = _train(mnist, config, 1)
    for n in (2, 4):
        state, losses = _train(mnist, config, n)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert int(state.step) == 3
    assert ref_losses[0] != ref_losses[1]  # the steps really trained on different batches


def test_one_device_steps_skip_their_collectives_bit_for_bit(mnist):
    """Over one device the step bodies get axis_name=None (no all-reduce to run): the same bits
    as the same step with its pmeans over the one-device axis."""
    config = _config('mlp')  # free bits: a pmean inside the loss too
    with_axis = lambda *a, **k: steps.train_step(*a, **dict(k, axis_name=steps.AXIS))
    seen = []
    without = lambda *a, **k: seen.append(k['axis_name']) or steps.train_step(*a, **k)
    state, losses = _train(mnist, config, 1, step_fn=without)
    ref_state, ref_losses = _train(mnist, config, 1, step_fn=with_axis)
    assert seen == [None]
    assert losses == ref_losses
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_array_equal(a, b)


def test_train_step_is_traced_once(mnist):
    traces = []

    def counting_step(*args, **kwargs):
        traces.append(1)  # runs only while JAX traces the function
        return steps.train_step(*args, **kwargs)

    _, losses = _train(mnist, _config('mlp'), 2, num_steps=6, step_fn=counting_step)
    assert len(losses) == 6
    assert len(traces) == 1


def test_hyperparameters_are_traced_data_not_constants(mnist):
    """Another β, γ or learning rate reuses the compiled step (one trace) and takes effect."""
    traces = []

    def counting_step(*args, **kwargs):
        traces.append(1)
        return steps.train_step(*args, **kwargs)

    config = _config('mlp')
    config.objective.free_bits = 0.0
    devices = jax.devices()[:2]
    fns = model_fns.build(config.model, mnist.example_shape, mnist.num_classes)
    p_train, _ = steps.pmapped_steps(fns, config, devices, step_fn=counting_step)
    state = steps.init_train_state(jax.random.key(0), fns, config, mnist.example_shape, 1)
    batch = next(pipeline.train_batches(mnist, seed=1, global_batch=GLOBAL_BATCH, start_step=0,
                                        num_steps=1, local_device_count=2))
    results = []
    for beta, lr in [(1.0, 1e-3), (4.0, 1e-3), (1.0, 1e-1)]:
        hparams = dict(steps.hyperparams(config), **{'objective.beta': jnp.float32(beta),
                                                     'optim.learning_rate': jnp.float32(lr)})
        new, metrics = p_train(steps.replicate(state, devices), batch, jax.random.key(7), hparams)
        results.append((float(metrics['loss'][0]), steps.unreplicate(new)))
    assert len(traces) == 1
    (loss1, s1), (loss4, s4), (_, s_fast) = results
    kl = float(metrics['kl'][0])
    np.testing.assert_allclose(loss4 - loss1, 3 * kl, rtol=1e-4)  # -ELBO + β KL
    assert float(s_fast.opt_state.hyperparams['learning_rate']) == np.float32(1e-1)
    step1 = jax.tree.leaves(jax.tree.map(lambda a, b: a - b, s1.params, state.params))
    step_fast = jax.tree.leaves(jax.tree.map(lambda a, b: a - b, s_fast.params, state.params))
    for a, b in zip(step1, step_fast):  # Adam's first update is lr * sign(g): 100 times larger
        np.testing.assert_allclose(b, 100 * a, rtol=1e-3, atol=1e-9)


def test_example_keys_depend_only_on_global_index():
    key = jax.random.key(3)
    idx = jnp.arange(8)
    all_keys = jax.random.key_data(keys_lib.example_keys(key, idx))
    second_half = jax.random.key_data(keys_lib.example_keys(key, idx[4:]))
    np.testing.assert_array_equal(all_keys[4:], second_half)
    assert len({tuple(k) for k in np.asarray(all_keys)}) == 8


def test_dynamic_binarization_is_bernoulli_of_intensity():
    x = jnp.full((4000, 3), 0.3)
    keys = keys_lib.example_keys(jax.random.key(0), jnp.arange(4000))
    xb, _ = steps.prepare_inputs({'image': x, 'label': jnp.zeros(4000, int)}, keys, 'dynamic')
    assert set(np.unique(xb)) <= {0.0, 1.0}
    assert abs(float(xb.mean()) - 0.3) < 0.015
    same, _ = steps.prepare_inputs({'image': x, 'label': None}, keys, 'none')
    np.testing.assert_array_equal(same, x)


def test_eval_sums_do_not_depend_on_device_count(mnist):
    config = _config('mlp')
    fns = model_fns.build(config.model, mnist.example_shape, mnist.num_classes)
    state = steps.create_train_state(jax.random.key(0), fns,
                                     optim.make_optimizer(config.optim, 1), mnist.example_shape)
    results = []
    for n in (1, 4):
        devices = jax.devices()[:n]
        _, p_eval = steps.pmapped_steps(fns, config, devices)
        rparams = steps.replicate(state.params, devices)
        totals = None
        for batch in pipeline.eval_batches(mnist, global_batch=40 * n, local_device_count=n,
                                           max_examples=100):
            s = jax.device_get(steps.unreplicate(p_eval(rparams, batch, jax.random.key(1))))
            totals = s if totals is None else {k: totals[k] + s[k] for k in s}
        results.append(totals)
    assert results[0]['count'] == results[1]['count'] == 100
    for k in ('neg_elbo', 'recon', 'kl'):
        np.testing.assert_allclose(results[0][k], results[1][k], rtol=1e-5)


def assert_same_leaves(tree, reference):
    """The same number of leaves (more than 4), each with the same values and dtype."""
    got, want = jax.tree.leaves(tree), jax.tree.leaves(reference)
    assert len(got) == len(want) > 4
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype


@pytest.mark.parametrize('model', ['mlp', 'conv', 'hvae', 'conditional', 'mlp:optim_aids'])
def test_jitted_initialisation_is_the_eager_one_bit_for_bit(model):
    # create_train_state initialises under one jit: the values must be those of flax's eager
    # init and optax's init, leaf by leaf, for every kind of model (a run's numbers rest on it),
    # on XLA:CPU, where the tests run.
    c = _config('conv' if model == 'conv' else 'mlp')
    if model == 'hvae':
        c.model.name, c.model.group_latents, c.model.group_hidden = 'hvae', (4, 2), (16, 8)
    c.model.conditional = model == 'conditional'
    c.optim.schedule = 'cosine'
    if model == 'mlp:optim_aids':  # optimizer states beyond Adam's: EMA, skipping, clipping
        c.optim.ema_decay, c.optim.skip_threshold, c.optim.grad_clip = 0.99, 100.0, 1.0
    shape = (28, 28, 1)
    fns = model_fns.build(c.model, shape, 10)
    tx = optim.make_optimizer(c.optim, 100)
    key = jax.random.key(3)
    state = steps.create_train_state(key, fns, tx, shape)
    y = jnp.zeros((1,), jnp.int32) if fns.conditional else None
    params = fns.module.init(key, jnp.zeros((1, *shape)), y)['params']
    eager = steps.TrainState.create(apply_fn=fns.module.apply, params=params, tx=tx, aux=None)
    assert jax.tree.structure(state) == jax.tree.structure(eager) and state.step == 0
    assert_same_leaves(state, eager)


def test_factor_vae_discriminator_jitted_initialisation_is_the_eager_one():
    from flax.training import train_state

    from vae_jax.objectives import factor_vae
    c = _config('mlp')
    c.objective.name = 'factor_vae'
    key = jax.random.key(5)
    disc = factor_vae.init(key, c)
    module = factor_vae.Discriminator(tuple(c.discriminator.hidden))
    params = module.init(key, jnp.zeros((1, c.model.latents)))['params']
    eager = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=disc.tx)
    assert disc.step == 0
    assert_same_leaves(disc, eager)
