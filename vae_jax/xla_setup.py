"""What vae_jax sets up in XLA before JAX starts: CPU (and, where JAX has a CUDA plugin, GPU)
flags that measurably help, and the persistent compilation cache. Both apply to every process
that imports vae_jax (launch.py, the `python -m vae_jax...` commands, a notebook) if JAX has not
yet started its backends.

- `CPU_FLAGS`: `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` has XLA:CPU
  run each convolution with its own (Eigen) kernels instead of YNNPACK's, which are slower
  on this project's conv nets, forward and backward: the conv β-VAE train step (batch 64,
  64×64) 110.5 → 91.7 ms on a 2-core CPU, its metrics' encoding 1.7× faster, the MLP step
  unchanged (it has no convolution) (`python benchmarks/xla_flags.py`). Convolutions round
  differently with it, so conv runs do not reproduce bit for bit across the switch (README,
  "Speed"). Only the CPU backend reads these flags.
- `GPU_FLAGS`, added only where a JAX CUDA plugin is installed (`jax_plugins.xla_cuda*`):
  `--xla_gpu_enable_triton_gemm=false` has XLA:GPU run matrix products with cuBLAS instead of
  Triton kernels, which it autotunes at compile time, over many tilings per product. On an
  NVIDIA H200 (JAX 0.11.2, CUDA 13, caches empty; each measured once, on three machines of
  that kind, 2026-12-04) the README's main job took 62.7 s, 47.0 of them compiling, and
  28.1 s with the flag, 10.8 compiling (test -ELBO 103.24 and 103.29);
  the train steps, timed against PyTorch on the same GPU in each run
  (`benchmarks/accelerator_check.py`): MLP JAX/PyTorch 8.53x without, 8.47x with; conv step
  447.5 and 443.7 steps/s (compilation 39.0 and 26.9 s). Not measured on the VDVAE. Turning
  autotuning off altogether (`--xla_gpu_autotune_level=0`) compiled the main job in 10.2 s
  but ran the conv step at 33 steps/s (its convolutions' algorithms untuned), so not that.
  `XLA_FLAGS=--xla_gpu_enable_triton_gemm=true` turns the flag off (the user's flags win); a
  process with a warm cache compiles little either way (the main job: 8.4 s, 1.1 compiling).
- The persistent compilation cache (`jax_compilation_cache_dir`) in `<cache>/jax`
  (`vae_jax.cache.cache_dir()`): a process that compiles what an earlier one compiled (the same
  model, shapes, JAX version and flags) reads the executable instead of compiling it again:
  a 20-step β-VAE launch (`launch.py --config=experiments/beta_vae.py:quick,steps=20
  --config.disentanglement.metrics='()'`, its `time` line's compile) compiles for 6.1 s the
  first time and 2.5-2.8 s after (the rest is tracing and lowering, which JAX does before it
  looks in the cache).

- A config's `xla_cpu_flags` (`apply_config_flags`): flags that help one experiment's model
  and not others, which launch.py sets for the processes that train or evaluate that config,
  before JAX starts. The β-VAE family's conv net sets `BETA_VAE_CPU_FLAGS`.

`VAE_JAX_XLA_FLAGS=0` leaves XLA_FLAGS alone; `VAE_JAX_COMPILE_CACHE=0` leaves the cache off.
A flag the user already set in XLA_FLAGS (by name) is never overridden; flags a parent vae_jax
process added (`ADDED_ENV`) are not the user's.
"""

import os
import re

from absl import logging

from vae_jax.errors import UserError

CPU_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)

# The conv β-VAE's (`configs.dsprites_config`): YNNPACK also runs XLA's elementwise fusions.
# XLA:CPU otherwise fuses each layer's bias + ReLU into the transposed copy of the activations
# that the next layer's weight gradient reads, and a transposing fusion that holds a broadcast
# runs ~4x slower than a plain transpose: 40% of the step's CPU time (`python
# benchmarks/step_profile.py --no_config_flags --transposes`). Its train step (batch 64,
# 64×64) goes from 84.6 to 68.6 ms (`python benchmarks/xla_flags.py --models conv,mlp`, 2-core
# Intel Xeon), the quick run's metrics from 44.6 to 40.4 s (one run each); it slows the other
# models' steps (MLP 4.3 -> 5.1 ms, HVAE 2.2 -> 2.7, 3 rounds; VDVAE 172.9 -> 260.5, 1 round:
# `--models mlp,hvae,vdvae --flags=...`), so only configs that gain set it. It rounds differently.
BETA_VAE_CPU_FLAGS = f'{CPU_FLAGS[0]},+eltwise'  # replaces CPU_FLAGS' value of the same flag

GPU_FLAGS = ('--xla_gpu_enable_triton_gemm=false',)

# Flag names that were in XLA_FLAGS before vae_jax added any: the user's, never replaced.
_user_flags: set[str] = set()

# The flags (`--name=value`) vae_jax itself put in XLA_FLAGS, recorded beside it. A child process
# (the ledger's launches, a benchmark's workers) inherits both and takes these out when it
# imports vae_jax; otherwise it would take its parent's vae_jax flags for the user's and never
# set its own config's.
ADDED_ENV = 'VAE_JAX_ADDED_XLA_FLAGS'


def _off(name: str) -> bool:
    return os.environ.get(name, '1').strip().lower() in ('0', 'false', 'off', 'no')


def setup() -> None:
    """Both, for this process (what importing vae_jax does)."""
    drop_inherited_flags()
    _user_flags.update(_names(os.environ.get('XLA_FLAGS', '')))
    if _backends_started():
        # Too late for this process; and XLA_FLAGS is part of the compilation cache's key,
        # which must not claim flags the running backend never read.
        if not _off('VAE_JAX_XLA_FLAGS'):
            logging.warning('JAX started before vae_jax was imported: its XLA flags %s are '
                            'not set (import vae_jax first, or set XLA_FLAGS yourself)',
                            ' '.join(default_flags()))
    else:
        add_xla_flags()
    enable_compilation_cache()


def drop_inherited_flags(environ=os.environ) -> None:
    """Takes out of environ['XLA_FLAGS'] the flags a parent vae_jax process put there (those
    recorded in environ[ADDED_ENV]): this process then starts from the user's flags alone and
    adds vae_jax's own and its config's, as if launched from a shell."""
    added = set(environ.get(ADDED_ENV, '').split())
    if added and not _backends_started():
        environ['XLA_FLAGS'] = ' '.join(f for f in environ.get('XLA_FLAGS', '').split()
                                        if f not in added)
        environ.pop(ADDED_ENV)


def _record_added(environ, flags) -> None:
    """Records `flags` as vae_jax's in environ[ADDED_ENV] (replacing same-named entries)."""
    environ[ADDED_ENV] = merge_flags(environ.get(ADDED_ENV, ''), ' '.join(flags), set())


def cuda_plugin_installed() -> bool:
    """Whether JAX has a CUDA plugin (jax-cuda12-pjrt or jax-cuda13-pjrt: the module
    `jax_plugins.xla_cuda12` / `xla_cuda13`), found without importing it or starting JAX."""
    import importlib.util
    import pkgutil

    try:
        spec = importlib.util.find_spec('jax_plugins')
    except (ImportError, ValueError):
        return False
    paths = spec.submodule_search_locations if spec else None
    return bool(paths) and any(m.name.startswith('xla_cuda') for m in pkgutil.iter_modules(paths))


def default_flags() -> tuple[str, ...]:
    """vae_jax's own flags for this process: CPU_FLAGS, and GPU_FLAGS where they can apply."""
    return CPU_FLAGS + (GPU_FLAGS if cuda_plugin_installed() else ())


def add_xla_flags(environ=os.environ, flags=None) -> list[str]:
    """Appends each of `flags` (default: `default_flags()`) to environ['XLA_FLAGS'] unless a
    flag of that name is there; returns those added. It takes effect only if JAX's backends
    have not started yet."""
    if _off('VAE_JAX_XLA_FLAGS'):
        return []
    flags = default_flags() if flags is None else flags
    present = set(_names(environ.get('XLA_FLAGS', '')))
    added = [f for f in flags if _name(f) not in present]
    if added:
        environ['XLA_FLAGS'] = ' '.join([environ.get('XLA_FLAGS', ''), *added]).strip()
        _record_added(environ, added)
    return added


def _name(flag: str) -> str:
    return flag.split('=', 1)[0]


def _names(flags: str) -> list[str]:
    return [_name(f) for f in flags.split()]


def merge_flags(current: str, flags: str, keep: set[str]) -> str:
    """`current` (an XLA_FLAGS value) with each of `flags` set: a flag of the same name is
    replaced unless its name is in `keep`, then the flag is left out."""
    out = current.split()
    for flag in flags.split():
        if _name(flag) not in keep:
            out = [f for f in out if _name(f) != _name(flag)] + [flag]
    return ' '.join(out)


def check_flags(flags) -> None:
    """Raises UserError unless `flags` is XLA flags written `--xla_name[=value]`, space separated
    (XLA itself refuses a well-formed name it does not know, when it starts)."""
    if not isinstance(flags, str) or not all(re.fullmatch(r'--xla_\w+(=\S+)?', f)
                                             for f in flags.split()):
        raise UserError(f'xla_cpu_flags={flags!r} must be XLA flags written --xla_name=value, '
                        f'separated by spaces')


def apply_config_flags(flags: str, environ=os.environ) -> str | None:
    """Sets a config's `xla_cpu_flags` in this process's XLA_FLAGS (replacing vae_jax's own
    value of a flag, never the user's); returns the XLA_FLAGS XLA will read, or None when
    they cannot apply: JAX's backends already started (a warning says so) or VAE_JAX_XLA_FLAGS=0.
    Raises UserError for flags not written as XLA flags.
    """
    check_flags(flags)
    if not flags.strip() or _off('VAE_JAX_XLA_FLAGS'):
        return None
    if _backends_started():
        logging.warning('JAX started before the config was read: its xla_cpu_flags %r are not '
                        'set', flags)
        return None
    environ['XLA_FLAGS'] = merge_flags(environ.get('XLA_FLAGS', ''), flags, _user_flags)
    _record_added(environ, [f for f in flags.split() if _name(f) not in _user_flags])
    return environ['XLA_FLAGS']


def saved_flags(workdir) -> str:
    """The xla_cpu_flags in a run's config.json; '' when it has none or cannot be read (what
    reads the run next reports that)."""
    import json
    from pathlib import Path

    from vae_jax.workdir import CONFIG_FILE
    try:
        flags = json.loads((Path(workdir) / CONFIG_FILE).read_text()).get('xla_cpu_flags', '')
    except (OSError, ValueError, AttributeError):
        return ''
    return flags if isinstance(flags, str) else ''


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge  # no public API says whether the backends are up
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def enable_compilation_cache() -> str | None:
    """Points JAX's persistent compilation cache at `<cache>/jax` (unless the user configured
    one, or VAE_JAX_COMPILE_CACHE=0); returns the directory used, or None."""
    import jax

    from vae_jax.cache import cache_dir

    if _off('VAE_JAX_COMPILE_CACHE'):
        return None
    if jax.config.jax_compilation_cache_dir:  # the user's choice
        return jax.config.jax_compilation_cache_dir
    path = str(cache_dir() / 'jax')
    jax.config.update('jax_compilation_cache_dir', path)
    # Every executable, however quick to build: a conv model's eager init alone compiles ~140
    # small ones (~40 ms each); cached, a warm launch's compilation falls from 5.4 to 2.6 s.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    # No size limit: with one, JAX locks the folder and lists every entry on each write, which
    # grows with the folder (thousands of small entries here). Without it an entry read while
    # another process writes it, or torn by a kill, is reported by JAX ("Error reading
    # persistent compilation cache entry") and compiled again: slower, never wrong. Deleting
    # <cache>/jax at any time is safe.
    return path
