"""Vmapped sweeps: each point equals the same point trained alone; NaN points are isolated."""

import json

import jax
import numpy as np
import pytest

from vae_jax import train
from vae_jax.errors import UserError
from vae_jax.run import load_run
from vae_jax.sweep import expand, product, read_status, run_sweep, sweep, zip_
from vae_jax.sweep.runner import apply_overrides


def _rows(workdir):
    return [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def _assert_same_run(vmapped_dir, alone_dir, rtol):
    a, b = load_run(vmapped_dir), load_run(alone_dir)
    assert a.step == b.step == 6
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * 1e-2)
    rows_a, rows_b = _rows(vmapped_dir), _rows(alone_dir)
    assert [(r['step'], r['split']) for r in rows_a] == [(r['step'], r['split']) for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        np.testing.assert_allclose([ra[k] for k in ra if k != 'split'],
                                   [rb[k] for k in ra if k != 'split'], rtol=rtol)
    assert sorted(p.name for p in (vmapped_dir / 'checkpoints').iterdir()) == ['3', '6']


def test_vmapped_points_equal_points_trained_alone(tiny_toy2d_config, tmp_path):
    """β and seed vary in one group, the learning rate in a second (each point's rate is its
    injected optax hyperparameter); batched matmuls may sum in another order, so the points
    equal the runs alone up to float rounding."""
    config = tiny_toy2d_config()
    points = expand(product(sweep('objective.beta', [0.5, 2.0]), sweep('seed', [0, 1])))
    outcomes = run_sweep(config, points, tmp_path / 'sweep', vmap=True)
    assert [o.status for o in outcomes] == ['done'] * 4
    assert read_status(tmp_path / 'sweep' / points[3].name)['vmapped'] == 4
    alone = tmp_path / 'alone'
    train.train_and_evaluate(apply_overrides(config, points[3].overrides), alone)
    _assert_same_run(tmp_path / 'sweep' / points[3].name, alone, rtol=1e-6)

    lr_points = expand(zip_(sweep('optim.learning_rate', [1e-3, 1e-2]), sweep('seed', [2, 3])))
    run_sweep(config, lr_points, tmp_path / 'lr', vmap=True)
    train.train_and_evaluate(apply_overrides(config, lr_points[1].overrides), tmp_path / 'lr1')
    _assert_same_run(tmp_path / 'lr' / lr_points[1].name, tmp_path / 'lr1', rtol=1e-5)

    # A second invocation skips the finished group.
    again = run_sweep(config, points, tmp_path / 'sweep', vmap=True)
    assert all(o.skipped for o in again)


def test_a_diverging_point_stops_alone(tiny_toy2d_config, tmp_path):
    config = tiny_toy2d_config()
    points = expand(sweep('optim.learning_rate', [1e30, 3e-3, 1e-3]))
    outcomes = run_sweep(config, points, tmp_path, vmap=True)
    assert [o.status for o in outcomes] == ['failed', 'done', 'done']
    assert 'loss became nan' in outcomes[0].error
    assert not (tmp_path / points[0].name / 'checkpoints').exists() or not any(
        (tmp_path / points[0].name / 'checkpoints').iterdir())
    assert [r['step'] for r in _rows(tmp_path / points[1].name) if r['split'] == 'eval'] == [3, 6]
    # Relaunched, the diverged point is not put back into the group (it would rewind the
    # others to its last checkpoint): it is reported, the finished points are skipped.
    assert read_status(tmp_path / points[0].name)['diverged'] is True
    again = run_sweep(config, points, tmp_path, vmap=True)
    assert [o.status for o in again] == ['failed', 'done', 'done']
    assert 'run it alone' in again[0].error and again[1].skipped and again[2].skipped


def test_points_differing_in_structure_cannot_be_vmapped(tiny_toy2d_config, tmp_path):
    points = expand(sweep('model.latents', [2, 3]))
    with pytest.raises(UserError, match='differ only in'):  # one error, before any write
        run_sweep(tiny_toy2d_config(), points, tmp_path / 'root', vmap=True)
    assert not (tmp_path / 'root').exists()
    with pytest.raises(UserError, match='model.latents'):
        from vae_jax.points import varying_hparams
        varying_hparams([apply_overrides(tiny_toy2d_config(), p.overrides) for p in points])
