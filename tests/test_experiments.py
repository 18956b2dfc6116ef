"""Every experiment config builds, validates, and honours its documented arguments."""

import importlib.util
from pathlib import Path

import pytest

from vae_jax import configs

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / 'experiments').glob('*.py'))
FAMILY = {'beta_vae': 'elbo', 'annealed_vae': 'capacity', 'beta_tcvae': 'beta_tcvae',
          'factor_vae': 'factor_vae', 'dip_vae': 'dip_vae'}


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_config_validates(path):
    module = _load(path)
    args = [None] + (['quick'] if 'quick' in (module.__doc__ or '') else [])
    for arg in args:
        configs.validate(module.get_config(arg))


@pytest.mark.parametrize('name', sorted(FAMILY))
def test_disentanglement_family_shares_the_dsprites_protocol(name):
    full = _load(Path(configs.__file__).parents[1] / 'experiments' / f'{name}.py')
    c, quick = full.get_config(), full.get_config('quick')
    assert c.objective.name == FAMILY[name]
    assert (c.data.name, c.model.encoder, c.model.latents, c.batch_size) == ('dsprites', 'conv', 10, 64)
    assert (c.num_steps, c.optim.learning_rate) == (300_000, 1e-4)
    assert (c.disentanglement.num_train, c.disentanglement.num_test) == (10_000, 5_000)
    assert quick.num_steps == 600 and quick.disentanglement.num_train < c.disentanglement.num_train


def test_dip_vae_types_follow_disentanglement_lib():
    dip = _load(Path(configs.__file__).parents[1] / 'experiments' / 'dip_vae.py')
    one, two = dip.get_config('lambda_od=5'), dip.get_config('type=ii,lambda_od=5')
    assert (one.objective.dip_type, one.objective.lambda_d) == ('i', 50.0)
    assert (two.objective.dip_type, two.objective.lambda_d) == ('ii', 5.0)
