"""Train and evaluate a vae_jax model, or evaluate an existing run.

    python launch.py --config=experiments/beta_vae.py:quick --workdir=runs/beta_quick
    python launch.py --config=experiments/vae.py --config.objective.beta=2 --workdir=runs/vae
    python launch.py --config=experiments/vae.py --config.num_epochs=40 --workdir=runs/vae
    python launch.py --config=... --config.objective.beta=4 --allow_config_change --workdir=...
    python launch.py --mode=eval --workdir=runs/vae [--iwae_samples=5000] [--eval_examples=N]
    python launch.py --mode=metrics --workdir=runs/beta_quick
    python launch.py --config=experiments/toy2d.py --sweep --workdir=runs/sweep
    python launch.py --config=experiments/toy2d.py --sweep_index=3 --workdir=runs/sweep
    python launch.py --config=experiments/toy2d.py --sweep --sweep_vmap --workdir=runs/sweep

`--mode=eval` reads the run's own config.json and latest checkpoint (the run may still be
training) and writes results/eval_<step>.json, images and TensorBoard summaries.
`--mode=metrics` computes only the disentanglement metrics (datasets with ground-truth factors)
and adds them to results/eval_<step>.json.

`--sweep` trains every point of the config file's get_sweep() in <workdir>/<point name>,
skipping finished points and going on past failed ones (exit status 1 if any failed);
`--sweep_index=i` (which implies --sweep) trains point i only, as a job-array worker does.

Bad input (unknown names, invalid values, a workdir that is a file, missing data, a workdir that
holds a run of another config or is in use) ends with a single 'error: ...' line and exit status
2, before anything is written; a misspelt --config.* override is rejected by the locked config.
SIGTERM or SIGINT saves a checkpoint of the current step and exits with 143 or 130; relaunching
the same command resumes.
"""

import time

_STARTED = time.monotonic()  # before the imports: the run's start-up phase (vae_jax.timings)

import gc

gc.disable()  # during the imports, until gc_freeze.freeze() below

import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vae_jax import distributed, gc_freeze, timings, xla_setup
from vae_jax.errors import UserError
from vae_jax.preemption import Preempted
from vae_jax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, images.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'metrics'],
                          'train (resuming if the workdir has a checkpoint), eval a run, or '
                          'compute its disentanglement metrics only.')
_IWAE_SAMPLES = flags.DEFINE_integer('iwae_samples', None,
                                     'eval: k of the IWAE bound (default: the config\'s).',
                                     lower_bound=1)
_EVAL_EXAMPLES = flags.DEFINE_integer('eval_examples', None,
                                      'eval: use only the first N test examples.', lower_bound=1)
_ALLOW_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Continue the run in --workdir although the config changes '
    'what is trained (the change and its step are recorded in history.jsonl); without it such '
    'a relaunch is refused.')
_SWEEP = flags.DEFINE_bool('sweep', False, "Train every point of the config file's "
                           'get_sweep(), each in <workdir>/<point name>.')
_SWEEP_VMAP = flags.DEFINE_bool('sweep_vmap', False, 'With --sweep: train the points as one '
                                'vmapped program (they may differ only in scalar '
                                'hyperparameters and seeds).')
_SWEEP_INDEX = flags.DEFINE_integer('sweep_index', None, 'Train only point i of the sweep '
                                    '(implies --sweep): one job-array worker.', lower_bound=0)
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'], 'jax.distributed.initialize(): auto = when '
    'the environment is a multi-process job (JAX_COORDINATOR_ADDRESS, a Cloud TPU VM, Slurm or '
    'Open MPI with several tasks); see vae_jax/distributed.py.')
flags.mark_flags_as_required(['workdir'])

gc_freeze.freeze()  # the imports' objects out of the collector's sight (see gc_freeze)


def _fail(message: str) -> None:
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
    """absl flag parsing, with one-line errors for bad flags, config files and overrides."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:  # bad flag value, missing required flag, unknown flag
        _fail(f'{e} (see --helpfull)')
    except UserError as e:  # a config file's get_config(arg) refused its argument
        _fail(str(e))
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        # ml_collections raises these for an override of an undeclared field or a config file
        # that cannot be loaded; the innermost message has the "did you mean" hint.
        while e.__context__ is not None and str(e.__context__):
            e = e.__context__
            if isinstance(e, UserError):
                _fail(str(e))
        overrides = ' '.join(a for a in argv[1:] if a.startswith('--config'))
        _fail(f'cannot build the config from {overrides!r}: {type(e).__name__}: {e}')


def _quiet_libraries(record) -> bool:
    """orbax and TFDS log every checkpoint write and file lookup at INFO; keep their warnings (std logging levels: absl.logging.ERROR is a verbosity, not a level)."""
    noisy = ('/orbax/' in record.pathname or '/tensorflow_datasets/' in record.pathname)
    return not noisy or record.levelno >= std_logging.WARNING


def main(argv):
    timings.mark_entry(_STARTED)
    if len(argv) > 1:
        _fail(f'unexpected arguments: {" ".join(argv[1:])} (flags are written --name=value; '
              f'see --helpfull)')
    logging.set_verbosity(logging.INFO)
    logging.get_absl_logger().addFilter(_quiet_libraries)
    sweeping = _SWEEP.value or _SWEEP_INDEX.value is not None
    if _SWEEP_VMAP.value and not sweeping:
        _fail('--sweep_vmap needs --sweep')
    if _ALLOW_CHANGE.value and (sweeping or _MODE.value != 'train'):
        _fail('--allow_config_change applies to training one run (a sweep point of another '
              'config is reported failed; give the sweep another --workdir)')
    try:
        _set_xla_flags()  # before anything starts JAX
        distributed.maybe_initialize(_DISTRIBUTED.value)  # before anything starts JAX
        if _MODE.value != 'train' and sweeping:
            raise UserError('--sweep trains; evaluate one point with --mode=eval '
                            '--workdir=<sweep workdir>/<point name>')
        if _MODE.value == 'eval':
            distributed.require_single_process('--mode=eval')  # its bound is not sharded
            from vae_jax.evaluate.report import evaluate_run  # only eval mode needs it
            evaluate_run(_WORKDIR.value, iwae_samples=_IWAE_SAMPLES.value,
                         max_examples=_EVAL_EXAMPLES.value)
        elif _MODE.value == 'metrics':
            distributed.require_single_process('--mode=metrics')
            from vae_jax.evaluate.factor_report import evaluate_workdir
            evaluate_workdir(_WORKDIR.value)
        elif sweeping:
            sys.exit(_sweep())
        else:
            train_and_evaluate(_config(), _WORKDIR.value,
                               allow_config_change=_ALLOW_CHANGE.value)
    except UserError as e:
        _fail(str(e))
    except Preempted as e:
        logging.warning('%s', e)
        sys.exit(e.exit_status)
    except OSError as e:  # disk full, permissions, a file vanished under us
        where = getattr(e, 'filename', None) or _WORKDIR.value
        _fail(f'cannot write {where}: {e.strerror or e} (the checkpoints written before are '
              f'kept; free space or fix permissions and relaunch to resume)')
    finally:
        gc_freeze.freeze()  # the run's objects too: Python's shutdown need not scan them


def _sweep() -> int:
    """Trains the sweep's points; the exit status is 1 if any of them failed."""
    from vae_jax import sweep
    config = _config()
    spec = config_flags.get_config_filename(flags.FLAGS['config'])
    outcomes = sweep.run_sweep(
        config, sweep.load_sweep(spec), _WORKDIR.value, only=_SWEEP_INDEX.value,
        config_spec=spec, command_line=config_flags.get_override_values(flags.FLAGS['config']),
        vmap=_SWEEP_VMAP.value)
    print(sweep.format_outcomes(outcomes, _WORKDIR.value), flush=True)
    return int(any(o.status == 'failed' for o in outcomes))


def _set_xla_flags() -> None:
    """The config's xla_cpu_flags for this process: the config trained, or the run's own."""
    if _MODE.value == 'train':
        config_flags = _config().get('xla_cpu_flags', '')
    else:
        config_flags = xla_setup.saved_flags(_WORKDIR.value)
    if xla_setup.apply_config_flags(config_flags) is not None:
        logging.info('XLA_FLAGS with the config\'s xla_cpu_flags: %s', os.environ['XLA_FLAGS'])


def _config():
    if _CONFIG.value is None:
        raise UserError('--config is required to train (e.g. --config=experiments/vae.py)')
    try:
        config = _CONFIG.value
        config.get('seed')  # ml_collections defers a config file's load error to first use
    except OSError as e:
        raise UserError(f'cannot load the config file: '
                        f'{str(e).strip().splitlines()[-1].strip()}') from None
    return config


if __name__ == '__main__':
    app.run(main, flags_parser=_parse_flags)
