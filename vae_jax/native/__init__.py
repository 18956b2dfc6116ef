"""vae_jax's own CPU kernels, compiled on first use and called through XLA's FFI.

The one kernel here, `conv_weight_gradient.cc`, is a strided convolution's weight gradient
read straight from NHWC activations, which XLA:CPU computes after a transposed copy of them
(see `vae_jax.weight_gradient`). `load()` compiles the source with the machine's C++ compiler
(``$CXX``, else ``g++``; ``-O3 -march=native``) into ``<cache>/native`` (`vae_jax.cache`), under
a name that hashes the source, the compiler's version, the flags, jaxlib's version and the
CPU's model and features, so that a shared cache folder never hands one machine another's
build; it writes to a temporary file and renames it into place, so processes that race
build the same file, and a damaged file is built again. Then it registers the kernel with XLA
for the CPU platform.

The kernel is written for AVX-512 (its register blocks fill AVX-512's 32 vector registers
halfway); a build without it (`VaeJaxHasAvx512`) is not used. Where the CPU lacks AVX-512,
there is no compiler, the build fails, or ``VAE_JAX_NATIVE=0``, `load()` logs why (once) and
returns False, and vae_jax computes the same gradients with XLA's own convolutions.
"""

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jax
import jaxlib
from absl import logging

from vae_jax import cache

SOURCE = Path(__file__).with_name('conv_weight_gradient.cc')
FLAGS = ('-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-w')
TARGETS = {'vae_jax_conv_weight_gradient': 'VaeJaxConvWeightGradient'}
_LOCK = threading.Lock()  # one build and registration per process, whichever thread asks first


def _cpu_identity() -> str:
    """The CPU's model and features (Linux), else what `platform` knows."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return f'{platform.machine()} {platform.processor()}'
    keep = [line for line in lines if line.startswith(('model name', 'flags', 'Features'))]
    return '\n'.join(sorted(set(keep)))


def _compiler() -> str:
    return os.environ.get('CXX') or 'g++'


def library_path() -> Path:
    """Where this machine's build of the kernels lives (whether or not it exists yet)."""
    version = subprocess.run([_compiler(), '--version'], capture_output=True, text=True,
                             check=True).stdout
    key = hashlib.sha256('\0'.join([SOURCE.read_text(), version, ' '.join(FLAGS),
                                    jaxlib.__version__, _cpu_identity()]).encode())
    return cache.cache_dir() / 'native' / f'vae_jax_native-{key.hexdigest()[:16]}.so'


def build(path: Path) -> None:
    """Compiles SOURCE to `path`, through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=path.parent)
    os.close(fd)
    try:
        command = [_compiler(), *FLAGS, f'-I{jax.ffi.include_dir()}', str(SOURCE), '-o', tmp]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise OSError(f'{" ".join(command)} failed: {result.stderr.strip()[-2000:]}')
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)  # mkstemp's 0600 would keep a shared cache's other users out
        os.replace(tmp, path)
        logging.info('built vae_jax CPU kernels in %.1f s: %s', time.perf_counter() - start, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load() -> bool:
    """Builds (once per machine) and registers the kernels; False, logged, where it cannot."""
    with _LOCK:
        return _load()


@functools.cache
def _load() -> bool:
    if os.environ.get('VAE_JAX_NATIVE') == '0':
        return False
    try:
        path = library_path()
        if not path.is_file():
            build(path)
        try:
            library = ctypes.CDLL(str(path))
        except OSError as e:  # a damaged file (a truncated copy, a full disk): build it again
            logging.warning('Rebuilding the damaged vae_jax CPU kernels %s (%s).', path, e)
            build(path)
            library = ctypes.CDLL(str(path))
        if not library.VaeJaxHasAvx512():
            logging.info('vae_jax CPU kernels not used: this CPU has no AVX-512; XLA\'s '
                         'convolutions compute the weight gradients.')
            return False
        for target, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                        platform='cpu')
    except Exception as e:  # noqa: BLE001 -- any failure means XLA's convolutions, not a crash
        logging.warning('vae_jax CPU kernels unavailable, using XLA\'s convolutions instead: %s', e)
        return False
    return True


def in_use() -> str:
    """The file name of the kernels loaded in this process ('' where there are none: not on CPU,
    not built, no AVX-512, or turned off), for a run's history.jsonl: a conv layer whose
    channels `weight_gradient.kernel_applies` takes computes its weight gradient with them."""
    if jax.default_backend() != 'cpu' or not load():
        return ''
    return library_path().name
