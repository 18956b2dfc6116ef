"""Train and evaluate a vae_jax model.

    python launch.py --config=experiments/beta_vae.py:quick --workdir=runs/beta_quick
    python launch.py --config=experiments/vae.py --config.objective.beta=2 --workdir=runs/vae

Bad input (unknown names, invalid values, a workdir that is a file, missing data) ends with a
single 'error: ...' line and exit status 2; a misspelt --config.* override is rejected by the
locked config.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vae_jax.errors import UserError
from vae_jax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, images.')
flags.mark_flags_as_required(['config', 'workdir'])


def _quiet_libraries(record) -> bool:
    """orbax and TFDS log every checkpoint write and file lookup at INFO; keep their warnings."""
    noisy = ('/orbax/' in record.pathname or '/tensorflow_datasets/' in record.pathname)
    return not noisy or record.levelno >= logging.ERROR


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_quiet_libraries)
    try:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    app.run(main)
