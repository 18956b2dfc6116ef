"""load_run: a trained workdir comes back with equal parameters and working functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import load_run, train
from vae_jax.errors import UserError


@pytest.fixture(scope='module')
def trained(tfds_dir, tiny_mnist_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('run')
    config = tiny_mnist_config(tfds_dir, **{'model.conditional': True, 'num_steps': 10,
                                            'checkpoint_every': 5, 'eval_every': 10})
    state = train.train_and_evaluate(config, workdir)
    return workdir, state


def test_load_run_round_trip(trained):
    workdir, state = trained
    run = load_run(workdir)
    assert run.step == 10
    for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                    jax.tree.leaves((run.params, run.state.opt_state))):
        np.testing.assert_array_equal(a, b)
    earlier = load_run(workdir, step=5)
    assert earlier.step == 5
    assert not np.array_equal(jax.tree.leaves(earlier.params)[0], jax.tree.leaves(run.params)[0])
    assert run.config.model.hidden == (32,) and run.example_shape == (28, 28, 1)


def test_run_functions(trained):
    run = load_run(trained[0])
    samples = run.sample(jax.random.key(0), 6, y=3)
    assert samples.shape == (6, 28, 28, 1)
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1
    x = jnp.asarray(np.random.default_rng(0).random((4, 28, 28, 1)) > 0.5, jnp.float32)
    mean, logvar = run.encode(x, y=jnp.arange(4))
    assert mean.shape == logvar.shape == (4, 4)
    recon = run.reconstruct(x, y=jnp.arange(4))
    np.testing.assert_allclose(recon, run.decode(mean, jnp.arange(4)), rtol=1e-6)
    with pytest.raises(ValueError, match='conditional'):
        run.sample(jax.random.key(0), 2)


def test_load_run_errors(trained, tmp_path):
    with pytest.raises(UserError, match='not a vae_jax run'):
        load_run(tmp_path)
    with pytest.raises(UserError, match='no checkpoint of step 7'):
        load_run(trained[0], step=7)
