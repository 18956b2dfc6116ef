"""The garbage collector's settings for a command's process: what lives as long as the process
is taken out of its sight.

A launch imports jax, flax, orbax and TFDS: a few hundred thousand Python objects that live until
the process ends. CPython's cyclic collector scans every tracked object in each full collection:
the ones a run triggers as it traces and compiles, and the several that Python's shutdown makes
after the last line of the log. `freeze()` moves everything tracked so far to the collector's
permanent generation (`gc.freeze`), which no collection scans again. launch.py keeps the
collector off during its imports and calls `freeze()` after them and again when the run ends
(so that the shutdown scans nothing the run made either); the `python -m vae_jax.evaluate.*`
commands (`errors.run_command`) call it before and after their body.

The cost: cyclic garbage among frozen objects is never collected. Frozen after the imports,
that is the little the imports leave behind; frozen at the end, nothing more runs.
`python benchmarks/gc_freeze.py` times the main job with and without it.

`VAE_JAX_GC_FREEZE=0` freezes nothing (the collector is still re-enabled after the imports).
"""

import gc
import os


def enabled(environ=os.environ) -> bool:
    """Whether `freeze()` freezes: unless VAE_JAX_GC_FREEZE is 0, false, off or no."""
    return environ.get('VAE_JAX_GC_FREEZE', '1').strip().lower() not in ('0', 'false', 'off', 'no')


def freeze(environ=os.environ) -> bool:
    """Moves every object the collector tracks now to its permanent generation (when
    `enabled`) and turns the collector on; returns whether it froze."""
    frozen = enabled(environ)
    if frozen:
        gc.freeze()
    gc.enable()
    return frozen
