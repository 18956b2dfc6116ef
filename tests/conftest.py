"""Test setup: 4 fake CPU devices and unoptimised XLA:CPU code (before JAX initialises), the
shared TFDS data_dir, and the
helpers several test files share, each exposed as a fixture:

  repo               the repository root (a Path)
  benchmark          benchmark(name): benchmarks/<name>.py imported as a module
  tfds_dir           the prepared TFDS data_dir (a str); skips the test when it is missing
  tiny_mnist_config  tiny_mnist_config(tfds_dir, **overrides): a few-step MNIST config (unlocked)
  tiny_toy2d_config  tiny_toy2d_config(): experiments/toy2d.py shrunk to 6 steps, locked
  launch             launch(*args, env_extra=None, devices=2, fault=None): launch.py in a subprocess
  xla_flags          xla_flags(devices): XLA_FLAGS for a process a test starts (`devices` fake
                     CPU devices, None for one; the tests' unoptimised code)
  tensorboard_tags   tensorboard_tags(workdir): the set of tags in a workdir's event files

and $VAE_JAX_CACHE points at a folder of this test session (shared by its xdist workers and
the processes they start), so decoded datasets are reused within the session and no test
writes to ~/.cache.
"""

import os
from pathlib import Path

# 4 fake CPU devices; and XLA:CPU's code generation made cheap: compiling, not running, is most
# of what the tests spend. LLVM's optimisations off (`bash .ci/run` in a fresh clone: 6 min 47 s
# against 10 min 9 s with them); the loop fusions emitted by XLA's older elemental emitter
# rather than through MLIR (the whole suite on a 2-core AMD EPYC VM: 345 s against 496 s with
# the MLIR fusion emitters, 2026-12-03); and each program's LLVM module compiled in one piece,
# not split for parallel compilation (tests/test_objective_registry.py alone: 23.0 and 23.5 s
# against 26.7 and 25.2 s; two xdist workers already keep both cores busy). Values are the same
# up to float rounding; the bit-identity tests compare runs of one setting.
UNOPTIMISED = ('--xla_backend_optimization_level=0 '  # also for the processes tests start
               '--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1')


def xla_flags(devices: int | None) -> str:
    """XLA_FLAGS for a process a test starts: `devices` fake CPU devices (None: one, the
    default) and the tests' unoptimised code."""
    count = '' if devices is None else f'--xla_force_host_platform_device_count={devices} '
    return count + UNOPTIMISED


os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + xla_flags(4)).strip()

import gc  # noqa: E402
import importlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TFDS_DIR = Path(os.environ.get('VAE_JAX_TFDS_DIR', REPO.parent / 'shared' / 'data' / 'tfds'))


def _tfds_missing_reason(test: str) -> str | None:
    """Why `test` cannot run for want of the prepared datasets, or None when they are there."""
    if (TFDS_DIR / 'mnist').is_dir():
        return None
    return (f'{test} needs the prepared TFDS datasets, not found at {TFDS_DIR}: set '
            f'VAE_JAX_TFDS_DIR to a TFDS data_dir holding mnist, fashion_mnist and binarized_mnist '
            f'as array_record, or build them there with `tfds build mnist fashion_mnist '
            f'binarized_mnist --data_dir={TFDS_DIR} --file_format=array_record` (needs internet '
            f'and tensorflow)')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Checked per test, before any fixture is set up, so that the skip names the test itself even
    # when it needs the data only through a module-scoped fixture (the session-scoped tfds_dir
    # would otherwise report the first test that asked for it, for every test after it).
    if 'tfds_dir' in getattr(item, 'fixturenames', ()):
        reason = _tfds_missing_reason(item.nodeid)
        if reason:
            pytest.skip(reason)


def pytest_configure(config):
    """$VAE_JAX_CACHE for the whole session, before any test module imports vae_jax (which
    points JAX's compilation cache there): one temporary folder that the xdist workers and the
    processes they start inherit, removed at the end. Tests that need their own folder set it
    with monkeypatch."""
    if os.environ.get('PYTEST_XDIST_WORKER') or os.environ.get('VAE_JAX_TEST_CACHE_SET'):
        return
    folder = tempfile.mkdtemp(prefix='vae_jax_test_cache_')
    os.environ['VAE_JAX_CACHE'] = folder
    os.environ['VAE_JAX_TEST_CACHE_SET'] = '1'
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_finish(session):
    """Freezes the objects of the modules collection imported (jax, flax, orbax, TFDS, the
    test modules), as launch.py does for a run: they live as long as the worker, and frozen, the
    garbage collector's full collections during the tests do not scan them again."""
    gc.freeze()


@pytest.fixture(scope='session')
def tfds_dir(request) -> str:
    reason = _tfds_missing_reason(request.node.nodeid or 'this test')
    if reason:
        pytest.skip(reason)
    return str(TFDS_DIR)


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@pytest.fixture(scope='session')
def benchmark(repo):
    """benchmark(name) -> benchmarks/<name>.py as a module; benchmarks/ stays on sys.path for
    the session, since its scripts import each other by name."""
    path = str(repo / 'benchmarks')
    sys.path.insert(0, path)
    yield importlib.import_module
    sys.path.remove(path)


# --- configs -------------------------------------------------------------------------------

def tiny_mnist_config(tfds_dir, **overrides):
    """A few steps of a small MLP VAE on the first 2048 MNIST training images (not locked)."""
    from vae_jax import base_config
    c = base_config()
    c.data.name = 'mnist'
    c.data.data_dir = tfds_dir
    c.data.train_split = 'train[:2048]'
    c.data.binarize = 'dynamic'
    c.model.hidden = (32,)
    c.model.latents = 4
    c.batch_size = 32
    c.eval_batch_size = 100
    c.eval_examples = 200
    c.num_steps = 20
    c.log_every = 5
    c.checkpoint_every = 10
    c.eval_every = 10
    c.optim.schedule = 'cosine'
    c.objective.kl_warmup_steps = 15
    c.update_from_flattened_dict(overrides)
    return c


def tiny_toy2d_config():
    """experiments/toy2d.py shrunk to 6 steps with evals and checkpoints at 3 and 6, locked."""
    from experiments import toy2d
    c = toy2d.get_config('steps=6')
    c.data.toy_examples = 1000
    c.batch_size = 32
    c.eval_batch_size = 100
    c.model.hidden = (8,)
    c.eval_every = c.checkpoint_every = c.log_every = 3
    c.lock()
    return c


@pytest.fixture(name='tiny_mnist_config', scope='session')
def _tiny_mnist_config_fixture():
    return tiny_mnist_config


@pytest.fixture(name='tiny_toy2d_config', scope='session')
def _tiny_toy2d_config_fixture():
    return tiny_toy2d_config


# --- launch.py and its outputs -------------------------------------------------------------

def launch(*args, env_extra=None, devices=2, fault=None):
    """Runs launch.py (tests/fault_launch.py with VAE_JAX_FAULT=fault when fault is given) on
    `devices` fake CPU devices, from the repository root, capturing its output."""
    env = dict(os.environ,
               XLA_FLAGS=xla_flags(devices),
               **(env_extra or {}))
    env.pop('VAE_JAX_FAULT', None)
    script = 'launch.py'
    if fault:
        env['VAE_JAX_FAULT'] = fault
        script = 'tests/fault_launch.py'
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def tensorboard_tags(workdir):
    """Tags in the workdir's event files, read as TFRecords (8-byte length, crc, data, crc)."""
    import struct
    from tensorboardX.proto import event_pb2
    tags = set()
    for path in workdir.glob('events.out.tfevents.*'):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack('<Q', data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            tags |= {v.tag for v in event.summary.value}
            pos += 16 + length
    return tags


@pytest.fixture(name='launch', scope='session')
def _launch_fixture():
    return launch


@pytest.fixture(name='xla_flags', scope='session')
def _xla_flags_fixture():
    return xla_flags


@pytest.fixture(name='tensorboard_tags', scope='session')
def _tensorboard_tags_fixture():
    return tensorboard_tags
