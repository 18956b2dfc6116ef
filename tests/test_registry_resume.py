"""Every registered objective and model family (the cases of test_objective_registry.py): a
run stopped and resumed from its checkpoint ends bit-identical to an uninterrupted one."""

import shutil

import jax
import numpy as np
import pytest

from test_objective_registry import CASES, _config
from vae_jax import train


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
