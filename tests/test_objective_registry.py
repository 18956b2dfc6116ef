"""Every registered objective, and every prior, posterior and model family, against the same
invariants.

For each entry of `objectives.REGISTRY` (with its fields set away from their defaults, so that
each traced hyperparameter matters), and for each model case of `MODELS` (trained with the
objective named there):
- the loss and the gradients are finite, and the step trains (the loss changes);
- steps on 4 fake devices equal the steps on 1 device for the same global batches, and the step
  is traced once even when every traced hyperparameter changes;
- a run stopped and resumed from its checkpoint ends bit-identical to an uninterrupted one.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import base_config, configs, model_fns, objectives, steps, train
from vae_jax.data import pipeline
from vae_jax.data.toy2d import Toy2DSource
from vae_jax.keys import example_keys
from vae_jax.objectives.core import Context

GLOBAL_BATCH = 16

# Values away from the defaults for the fields the built-in objectives read, where the default
# would hide a term (β = 1 makes β-TCVAE's TC term vanish). Any other registered objective runs
# with its traced fields at twice their defaults (`_settings`).
SETTINGS = {
    'elbo': {'objective.beta': 2.0, 'objective.kl_warmup_steps': 2, 'objective.free_bits': 0.05},
    'iwae': {'objective.num_samples': 3},
    'capacity': {'objective.gamma': 10.0, 'objective.capacity_max': 5.0,
                 'objective.capacity_steps': 4},
    'beta_tcvae': {'objective.beta': 6.0},
    'factor_vae': {'objective.gamma': 6.4, 'discriminator.hidden': (16, 16)},
    'dip_vae': {'objective.dip_type': 'ii', 'objective.lambda_d': 10.0},
}


# Model families with what they are trained with in these tests: 'model.*' settings plus the
# objective. Each runs through the same four tests as the objectives.
MODELS = {
    'model:gaussian_mixture': {'model.prior': 'gaussian_mixture', 'model.prior_components': 3},
    'model:vampprior': {'model.prior': 'vampprior', 'model.prior_components': 4},
    'model:iaf': {'model.posterior': 'iaf', 'model.flow_hidden': 8, 'objective.name': 'iwae',
                  'objective.num_samples': 2},
    'model:hvae': {'model.name': 'hvae', 'model.group_latents': (3, 2),
                   'model.group_hidden': (8, 8), 'model.group_depth': 1,
                   'objective.name': 'piwae', 'objective.num_samples': 2,
                   'objective.num_bounds': 2},
}
CASES = sorted(objectives.REGISTRY) + sorted(MODELS)


def _settings(name):
    if name in MODELS:
        return MODELS[name]
    if name in SETTINGS:
        return SETTINGS[name]
    objective = objectives.get(name)
    return {f'objective.{f}': 2 * objective.defaults[f] for f in objective.traced
            if objective.defaults[f]}


def _config(name):
    c = base_config()
    c.data.name = 'toy2d'
    c.data.toy_examples = 256
    c.model.likelihood = 'gaussian'
    c.model.hidden = (16,)
    c.model.latents = 3
    c.batch_size = GLOBAL_BATCH
    c.eval_batch_size = 64
    c.disentanglement.metrics = ()
    c.objective.name = 'elbo' if name in MODELS else name
    c.update_from_flattened_dict(_settings(name))
    configs.validate(c)
    return c


@pytest.fixture(scope='module')
def source():
    return Toy2DSource('pinwheel', 256, seed=0)


def _batches(source, num_devices, num_steps):
    return pipeline.train_batches(source, seed=1, global_batch=GLOBAL_BATCH, start_step=0,
                                  num_steps=num_steps, local_device_count=num_devices)


@pytest.mark.parametrize('name', CASES)
def test_loss_and_gradients_are_finite(source, name):
    config = _config(name)
    fns = model_fns.build(config.model, source.example_shape, source.num_classes)
    state = steps.init_train_state(jax.random.key(0), fns, config, source.example_shape, 4)
    objective = objectives.get(config.objective.name)
    batch = source.get_batch(np.arange(GLOBAL_BATCH))
    keys = example_keys(jax.random.key(1), jnp.arange(GLOBAL_BATCH))
    ctx = Context(fns=fns, settings=steps.settings(config.objective, steps.hyperparams(config)),
                  step=jnp.asarray(1), aux=state.aux)
    loss_and_grads = jax.jit(jax.value_and_grad(
        lambda params, x: objective.loss(params, x, None, keys, ctx), has_aux=True))
    (loss, (metrics, _)), grads = loss_and_grads(state.params, jnp.asarray(batch['image']))
    assert np.isfinite(float(loss)) and float(metrics['loss']) == float(loss)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert np.isfinite(float(optax.global_norm(grads))) and float(optax.global_norm(grads)) > 0


def _train(source, config, num_devices, num_steps, step_fn=steps.train_step, hparams=None):
    fns = model_fns.build(config.model, source.example_shape, source.num_classes)
    state = steps.init_train_state(jax.random.key(0), fns, config, source.example_shape,
                                   num_steps)
    devices = jax.devices()[:num_devices]
    p_train, _ = steps.pmapped_steps(fns, config, devices, step_fn=step_fn)
    rstate, metrics = steps.replicate(state, devices), []
    for i, batch in enumerate(_batches(source, num_devices, num_steps)):
        h = hparams[i] if hparams else steps.hyperparams(config)
        rstate, m = p_train(rstate, batch, jax.random.key(7), h)
        metrics.append({k: float(v[0]) for k, v in m.items()})
    return steps.unreplicate(rstate), metrics


@pytest.mark.parametrize('name', CASES)
def test_same_on_1_and_4_devices_and_traced_once_when_hyperparameters_change(source, name):
    """Three steps, every traced hyperparameter doubled at the second: the 4-device run traces
    its step once and matches the 1-device run step by step."""
    config = _config(name)
    traces = []

    def counting_step(*args, **kwargs):
        traces.append(1)  # runs only while JAX traces the function
        return steps.train_step(*args, **kwargs)

    base = steps.hyperparams(config)
    changed = {k: v * 2 for k, v in base.items()}
    schedule = [base, changed, base]
    ref_state, ref = _train(source, config, 1, 3, hparams=schedule)
    state, got = _train(source, config, 4, 3, counting_step, schedule)
    assert len(traces) == 1
    for a, b in zip(got, ref):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=1e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert ref[0]['loss'] != ref[1]['loss']


@pytest.mark.parametrize('name', CASES)
def test_resumed_run_is_bit_identical(name, tmp_path):
    config = _config(name)
    config.num_steps, config.checkpoint_every, config.log_every = 6, 3, 3
    straight = train.train_and_evaluate(config, tmp_path / 'straight')
    # What a kill just before the step-6 save leaves: the workdir with checkpoint 3 only.
    shutil.copytree(tmp_path / 'straight', tmp_path / 'resumed')
    shutil.rmtree(tmp_path / 'resumed' / 'checkpoints' / '6')
    resumed = train.train_and_evaluate(config, tmp_path / 'resumed')
    assert int(resumed.step) == 6
    history = (tmp_path / 'resumed' / 'history.jsonl').read_text().splitlines()
    assert len(history) == 2 and '"start_step": 3' in history[1]
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(a, b)
