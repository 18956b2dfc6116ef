"""Test setup: 4 fake CPU devices (before JAX initialises) and the shared TFDS data_dir."""

import os
from pathlib import Path

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TFDS_DIR = Path(os.environ.get('VAE_JAX_TFDS_DIR', REPO.parent / 'shared' / 'data' / 'tfds'))


@pytest.fixture(scope='session')
def tfds_dir() -> str:
    if not (TFDS_DIR / 'mnist').is_dir():
        pytest.skip(f'prepared TFDS data not found at {TFDS_DIR} (set VAE_JAX_TFDS_DIR)')
    return str(TFDS_DIR)
