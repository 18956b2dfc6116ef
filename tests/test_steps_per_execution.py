"""Several train steps per call (`config.steps_per_execution`): `steps.pmapped_multi_step`
trains what as many calls of the step train (up to float rounding), and `loop.steps_in_call`
plans calls that end at every step that logs, evaluates or saves, and that a resumed run makes
again from wherever it stopped. (The SIGTERM-and-resume run through launch.py is in
test_reliability.py.)"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_steps import GLOBAL_BATCH, _config
from vae_jax import loop, model_fns, optim, steps, train
from vae_jax.data import pipeline
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.metric_writer import read_metrics
from vae_jax.sweep import expand, run_sweep, sweep

from experiments import toy2d


def calls(start, k, periods, total):
    """[(steps done before the call, steps it trains)] from `start` to `total`."""
    out, done = [], start
    while done < total:
        out.append((done, loop.steps_in_call(done, k, periods, total)))
        done += out[-1][1]
    return out


@pytest.mark.parametrize('k, periods, total', [
    (4, (5, 20, 10), 40),         # test_reliability's toy run
    (10, (200, 390, 2000), 3900),  # the README's main job: log, eval (an epoch), checkpoint
    (3, (7, 7, 7), 50),
    (8, (8, 16, 32), 100),
    (6, (100, 100, 100), 5),      # shorter than one call
])
def test_calls_end_at_every_boundary(k, periods, total):
    # (A resumed run makes the same calls: the plan is a function of the step count; the run
    # through launch.py that checks it is in test_reliability.py.)
    run = calls(0, k, periods, total)
    boundaries = {s for s in range(1, total + 1) if s == total or any(s % p == 0 for p in periods)}
    assert all(n in (1, k) for _, n in run)
    assert not [(d, n) for d, n in run for b in boundaries if d < b < d + n]  # none crossed
    assert boundaries <= {d + n for d, n in run}
    last = lambda s: max(s // p * p for p in periods)  # noqa: E731
    assert all((d - last(d)) % k == 0 for d, n in run if n == k)
    assert calls(0, 1, periods, total) == [(s, 1) for s in range(total)]
    if total == 3900:  # every gap between the main job's boundaries is a multiple of 10
        assert {n for _, n in run} == {10}
    if total == 100:  # twelve calls of 8 to step 96, then single steps to the end
        assert [n for _, n in run] == [8] * 12 + [1] * 4


@pytest.fixture(scope='module')
def mnist(tfds_dir):
    return TfdsSource('mnist', 'train[:512]', tfds_dir)


@pytest.mark.parametrize('encoder, vmapped', [('mlp', False), ('mlp', True), ('conv', False)])
def test_k_steps_in_one_call_train_what_k_calls_train(mnist, encoder, vmapped):
    """2 devices (the gradients' pmean inside the scan); vmapped: a group of two points with
    different learning rates, batches [devices, k, P, b, ...]. On CPU a step with
    convolutions is unrolled (see `steps.has_convolution`), the MLP's is a loop."""
    config, devices, k = _config(encoder), jax.devices()[:2], 3
    fns = model_fns.build(config.model, mnist.example_shape, mnist.num_classes)
    tx = optim.make_optimizer(config.optim, 2 * k)
    state = steps.create_train_state(jax.random.key(0), fns, tx, mnist.example_shape)
    hparams, key = steps.hyperparams(config), jax.random.key(7)
    batches = list(pipeline.train_batches(mnist, seed=1, global_batch=GLOBAL_BATCH, start_step=0,
                                          num_steps=2 * k, local_device_count=2))
    if vmapped:
        state = jax.tree.map(lambda x: jnp.stack([x, x]), state)
        hparams = {n: jnp.stack([v, v]) for n, v in hparams.items()}
        hparams[steps.LEARNING_RATE] = jnp.asarray([1e-3, 3e-3])
        key = jnp.stack([key, key])
        batches = [{n: np.stack([v, v], axis=1) for n, v in b.items()} for b in batches]
    p_train, _ = steps.pmapped_steps(fns, config, devices, vmapped=vmapped)
    p_train_k = steps.pmapped_multi_step(fns, config, devices, vmapped=vmapped)
    one = steps.replicate(state, devices)
    losses_one = []
    for batch in batches:
        one, metrics = p_train(one, batch, key, hparams)
        losses_one.append(np.asarray(metrics['loss'][0]))
    many = steps.replicate(state, devices)
    losses_many = []
    for i in (0, k):
        stacked = {n: np.stack([b[n] for b in batches[i:i + k]], axis=1) for n in batches[0]}
        many, metrics = p_train_k(many, stacked, key, hparams)
        assert metrics['loss'].shape == ((2, k, 2) if vmapped else (2, k))
        losses_many += list(np.asarray(metrics['loss'][0]))
    np.testing.assert_allclose(losses_many, losses_one, rtol=1e-5)
    # Unrolled, the program holds k copies of the step's convolutions; rolled, one loop body.
    op = {'conv': ' convolution(', 'mlp': ' dot('}[encoder]
    count = lambda f, *a: f.lower(*a).compile().as_text().count(op)  # noqa: E731
    assert (count(p_train_k, many, stacked, key, hparams)
            == count(p_train, one, batches[0], key, hparams) * (k if encoder == 'conv' else 1))
    one, many = steps.unreplicate(one), steps.unreplicate(many)
    assert int(np.max(many.step)) == int(np.max(one.step)) == 2 * k
    for a, b in zip(jax.tree.leaves(many.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if vmapped:  # the two points really trained differently
        assert not np.allclose(*jax.tree.leaves(many.params)[0])


def test_a_run_logs_every_step_of_its_calls(tmp_path, monkeypatch):
    """toy2d, 4 steps per call and a log every 5: each logged window (mean over its steps) is
    the one-step-per-call run's, so no step is lost or counted twice."""
    planned = []
    plan = loop.steps_in_call
    monkeypatch.setattr(loop, 'steps_in_call', lambda *a: planned.append(plan(*a)) or planned[-1])

    def run(k):
        c = toy2d.get_config('steps=20')
        c.log_every, c.checkpoint_every, c.eval_every, c.steps_per_execution = 5, 10, 10, k
        c.eval_examples = 1000
        state = train.train_and_evaluate(c, tmp_path / f'k{k}')
        return state, read_metrics(tmp_path / f'k{k}' / 'metrics.jsonl')[0]
    (_, rows_one), (many, rows_many) = run(1), run(4)
    assert [(r['step'], r['split']) for r in rows_many] == [(r['step'], r['split'])
                                                            for r in rows_one]
    for a, b in zip(rows_many, rows_one):
        np.testing.assert_allclose([a[n] for n in b if n not in ('step', 'split')],
                                   [b[n] for n in b if n not in ('step', 'split')], rtol=1e-4)
    assert int(many.step) == 20
    assert planned == [1] * 20 + [4, 1] * 4  # the k=1 run, then calls 1-4, 5, 6-9, 10, ...


def test_a_run_saved_before_the_field_existed_records_its_change(tmp_path):
    """config.json without `steps_per_execution` (written before it existed) reads as the
    base config's 1, so a relaunch with 4 records the change, and is allowed (it changes
    rounding only)."""
    c = toy2d.get_config('steps=10')
    c.log_every = c.checkpoint_every = c.eval_every = 5
    c.eval_examples = 1000
    train.train_and_evaluate(c, tmp_path)
    saved = json.loads((tmp_path / 'config.json').read_text())
    del saved['steps_per_execution']
    (tmp_path / 'config.json').write_text(json.dumps(saved))
    c.num_steps, c.steps_per_execution = 20, 4
    assert int(train.train_and_evaluate(c, tmp_path).step) == 20
    history = [json.loads(l) for l in (tmp_path / 'history.jsonl').read_text().splitlines()]
    assert history[-1]['changes'] == {'num_steps': [10, 20], 'steps_per_execution': [1, 4]}


def test_a_diverging_point_of_a_vmapped_group_is_stopped_at_its_own_step(tiny_toy2d_config,
                                                                        tmp_path):
    """A vmapped group at 2 steps per call (calls 1-2, 3, 4-5, 6): the point whose loss turns NaN
    is reported at the step the one-step-per-call group reports, inside a call; the other
    point logs and finishes as it does there."""
    def group(k):
        config = tiny_toy2d_config()
        config.steps_per_execution = k
        points = expand(sweep('optim.learning_rate', [1e30, 1e-3]))
        outcomes = run_sweep(config, points, tmp_path / f'k{k}', vmap=True)
        rows = read_metrics(tmp_path / f'k{k}' / points[1].name / 'metrics.jsonl')[0]
        return outcomes, rows
    (one, rows_one), (two, rows_two) = group(1), group(2)
    assert [o.status for o in two] == [o.status for o in one] == ['failed', 'done']
    step = re.search(r'became nan at step (\d+)', one[0].error)
    assert step and f'became nan at step {step[1]}' in two[0].error
    assert [(r['step'], r['split']) for r in rows_two] == [(r['step'], r['split'])
                                                           for r in rows_one]
    for a, b in zip(rows_two, rows_one):
        np.testing.assert_allclose([a[n] for n in b if n not in ('step', 'split')],
                                   [b[n] for n in b if n not in ('step', 'split')], rtol=1e-4)


def test_has_convolution_sees_the_convolutions_of_a_differentiated_step():
    """The conv nets' convolutions sit inside custom_jvp rules and flax modules (nested
    jaxprs); the MLP has none."""
    x = jnp.zeros((2, 28, 28, 1))
    for encoder, expected in (('conv', True), ('mlp', False)):
        config = _config(encoder)
        fns = model_fns.build(config.model, (28, 28, 1), 10)
        params = steps.create_train_state(jax.random.key(0), fns,
                                          optim.make_optimizer(config.optim, 1), (28, 28, 1)).params
        loss = lambda p: jnp.sum(fns.decode(p, fns.encode(p, x)[0]))  # noqa: E731
        assert steps.has_convolution(jax.grad(loss), params) is expected
