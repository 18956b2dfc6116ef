"""Every registered objective, and every prior, posterior and model family, against the same
invariants.

For each entry of `objectives.REGISTRY` (with its fields set away from their defaults, so that
each traced hyperparameter matters), and for each model case of `MODELS` (trained with the
objective named there):
- the loss, its terms and the gradient norm are finite and nonzero, and the step trains (the loss
  changes);
- steps on 4 fake devices equal the steps on 1 device for the same global batches, and the step
  is traced once even when every traced hyperparameter changes;
- a run stopped and resumed from its checkpoint ends bit-identical to an uninterrupted one
  (tests/test_registry_resume.py, a file of its own so that the two test workers share the work).
"""

import jax
import numpy as np
import pytest

from vae_jax import base_config, configs, model_fns, objectives, steps
from vae_jax.data import pipeline
from vae_jax.data.toy2d import Toy2DSource

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
# objective; and the optimizer's training aids (update skipping, the parameter EMA). Each runs through the same tests as the objectives.
MODELS = {
    'optim:ema_skip': {'optim.ema_decay': 0.9, 'optim.skip_threshold': 3.0,
                       'optim.skip_max_consecutive': 1},
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
    assert all(np.isfinite(v) for m in got for v in m.values())  # loss, terms, grad_norm
    assert all(m['grad_norm'] > 0 for m in got)
    for a, b in zip(got, ref):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=1e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert ref[0]['loss'] != ref[1]['loss']
