"""Config arguments (`configs.parse_arg`): typed, checked against each experiment's `ARGS`."""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vae_jax import configs
from vae_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / 'experiments').glob('*.py'))
SPEC = dict(quick=False, beta=4.0, steps=0, betas='1/2/4/6/8/16', seeds=5)


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _experiment(name):
    return _load(REPO / 'experiments' / f'{name}.py')


def _as_text(default) -> str:
    """A spec default written as it is typed after the colon: 'false', '4.0', 'i'."""
    if isinstance(default, tuple):
        return default[0]
    return str(default).lower() if isinstance(default, bool) else str(default)


def _error(arg, source='', **spec) -> str:
    with pytest.raises(UserError) as e:
        configs.parse_arg(arg, source, **spec)
    return str(e.value)


@pytest.mark.parametrize('arg', [None, '', ' , '])
def test_no_argument_gives_the_defaults(arg):
    assert configs.parse_arg(arg, **SPEC).to_dict() == SPEC


def test_values_convert_to_the_declared_types():
    args = configs.parse_arg(' quick, beta=1e-3,steps=10 ,betas=1/4,seeds=2', **SPEC)
    assert args.to_dict() == dict(quick=True, beta=1e-3, steps=10, betas='1/4', seeds=2)
    assert type(args.steps) is int and type(args.seeds) is int
    four = configs.parse_arg('beta=4', **SPEC).beta
    assert type(four) is float and four == 4.0


@pytest.mark.parametrize('text, value', [('true', True), ('True', True), ('1', True),
                                         ('false', False), ('FALSE', False), ('0', False)])
def test_bools_take_true_false_1_0(text, value):
    assert configs.parse_arg(f'quick={text}', **SPEC).quick is value
    assert configs.parse_arg(f'flag={text}', flag=True).flag is value


def test_choices_default_to_the_first_and_refuse_others():
    assert configs.parse_arg(None, type=('i', 'ii')).type == 'i'
    assert configs.parse_arg('type=ii', type=('i', 'ii')).type == 'ii'
    assert _error('type=iii', type=('i', 'ii')) == (
        "config argument type='iii' must be one of 'i', 'ii'")


def test_unknown_name_suggests_the_closest_and_lists_every_valid_one():
    assert _error('quik', 'experiments/beta_vae.py', **SPEC) == (
        "unknown config argument 'quik' for experiments/beta_vae.py (did you mean 'quick'?); "
        "valid: quick=False, beta=4.0, steps=0, betas='1/2/4/6/8/16', seeds=5")
    message = _error('beta=4,learning_rate=1', **SPEC)
    assert message.startswith("unknown config argument 'learning_rate'; valid: quick=False")
    assert 'did you mean' not in message


@pytest.mark.parametrize('arg, message', [
    ('steps=abc', "config argument steps='abc' must be an int"),
    ('steps=1.5', "config argument steps='1.5' must be an int"),
    ('seeds=', "config argument seeds='' must be an int"),
    ('beta=four', "config argument beta='four' must be a float"),
    ('quick=yes', "config argument quick='yes' must be a bool (true, false, 1 or 0)"),
])
def test_wrong_types_are_refused(arg, message):
    assert _error(arg, **SPEC) == message


@pytest.mark.parametrize('name', ['beta', 'steps', 'betas'])
def test_a_bare_name_is_a_bool_only(name):
    assert _error(name, **SPEC) == (f"config argument {name!r} needs a value, "
                                    f"e.g. {name}={SPEC[name]!r}")


def test_a_repeated_name_is_refused():
    assert "'beta' is given twice" in _error('beta=1,quick,beta=2', **SPEC)


@pytest.mark.parametrize('default', [None, (), (1, 2), [1.0]])
def test_a_default_of_no_known_type_is_a_bug_in_the_config(default):
    with pytest.raises(TypeError, match="config argument 'x'"):
        configs.parse_arg(None, x=default)


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.stem)
def test_every_declared_argument_is_accepted_and_documented(path):
    """get_config (and get_sweep) take each key of ARGS; writing its default changes nothing."""
    module = _load(path)
    baseline = module.get_config(None).to_dict()
    assert module.get_config('').to_dict() == baseline
    configs.validate(module.get_config(None))
    for name, default in module.ARGS.items():
        arg = f'{name}={_as_text(default)}'
        assert module.get_config(arg).to_dict() == baseline, arg
        if hasattr(module, 'get_sweep'):
            assert module.get_sweep(arg) == module.get_sweep(None), arg
        assert f'`{name}' in module.__doc__, f'{path.name} docstring does not mention {name}'


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_refuses_a_misspelt_argument(path):
    module = _load(path)
    calls = [module.get_config] + ([module.get_sweep] if hasattr(module, 'get_sweep') else [])
    for call in calls:
        with pytest.raises(UserError, match=f"'quik' for .*experiments/{path.name}"):
            call('quik')


def test_beta_vae_quik_is_an_error_not_the_full_protocol():
    with pytest.raises(UserError, match=r"'quik'.*did you mean 'quick'"):
        _experiment('beta_vae').get_config('quik')


def test_dsprites_steps_override_quick_and_full():
    beta_vae = _experiment('beta_vae')
    assert beta_vae.get_config('steps=50').num_steps == 50
    assert beta_vae.get_config('quick,steps=50').num_steps == 50
    assert beta_vae.get_config('quick=0').num_steps == 300_000
    with pytest.raises(UserError, match='steps must be >= 0'):
        beta_vae.get_config('steps=-1')


def test_beta_vae_sweep_reads_betas_and_seeds():
    beta_vae = _experiment('beta_vae')
    points = beta_vae.get_sweep('quick,betas=1/4/16,seeds=1')
    assert beta_vae.get_config('quick,betas=1/4/16,seeds=1').num_steps == 600
    assert sorted(p['objective.beta'] for p in points) == [1.0, 4.0, 16.0]
    with pytest.raises(UserError, match=r"betas='1/x' must be numbers"):
        beta_vae.get_sweep('betas=1/x')


def test_toy2d_refuses_a_misspelt_name_and_an_unknown_kind():
    toy2d = _experiment('toy2d')
    with pytest.raises(UserError, match=r"'stepz'.*did you mean 'steps'"):
        toy2d.get_config('stepz=10')
    with pytest.raises(UserError, match="kind='moons' must be one of 'pinwheel', 'gaussian_"):
        toy2d.get_config('kind=moons')
    assert toy2d.get_config('kind=gaussian_mixture,steps=10').num_steps == 10


def test_toy2d_kinds_are_the_datasets():
    from vae_jax.data.toy2d import KINDS
    assert _experiment('toy2d').ARGS['kind'] == KINDS


def test_dip_vae_refuses_an_unknown_type():
    dip = _experiment('dip_vae')
    for call in (dip.get_config, dip.get_sweep):
        with pytest.raises(UserError, match="type='iii' must be one of 'i', 'ii'"):
            call('type=iii')


def test_iwae_takes_vae_arguments_and_k():
    iwae = _experiment('iwae')
    c = iwae.get_config('epochs=5,k=3')
    assert (c.num_epochs, c.objective.name, c.objective.num_samples) == (5.0, 'iwae', 3)
    with pytest.raises(UserError, match="valid: epochs=30.0, seeds=3, k=5"):
        iwae.get_config('kk=3')


def test_launch_reports_a_misspelt_argument_in_one_line(tmp_path):
    workdir = tmp_path / 'run'
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, 'launch.py', '--config=experiments/beta_vae.py:quik',
         f'--workdir={workdir}'], cwd=REPO, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and 'quik' in errors[0], proc.stderr
    assert "did you mean 'quick'" in errors[0]
    assert 'Traceback' not in proc.stderr
    assert not workdir.exists()
    assert elapsed < 10, f'{elapsed:.1f} s'
