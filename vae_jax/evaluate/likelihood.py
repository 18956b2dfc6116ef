"""The importance-weighted bound on log p(x) (Burda et al. 2015) of a whole split.

`evaluate_likelihood` streams a split through `objectives.iwae_bound` (k samples per example,
drawn `chunk` at a time; k = 5000 is the usual test-set protocol) on every local device.
Sample j of example i uses `keys.iwae_sample_key(fold_in(key, i), j)` with i its index in the
evaluated split: the number depends on neither the batch size, the chunk size nor the device
count, and sample 0 is the very z of the single-sample ELBO evaluated with that key.
"""

import ctypes
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import steps
from vae_jax.data import pipeline
from vae_jax.keys import example_keys
from vae_jax.model_fns import ModelFns
from vae_jax.objectives import elbo_terms, iwae_bound


def retain_freed_memory() -> None:
    """Makes glibc keep freed memory in the process instead of returning it to the OS.

    XLA:CPU's fused decoder + likelihood allocates its intermediates (hidden units and logits
    of batch × chunk samples, ~10 MB) on every chunk, from worker threads. With glibc's
    default thresholds each free hands them back (munmap / heap trim) and the next chunk
    page-faults them in again: ~1.4 faults per sample, a third of the CPU time in the kernel,
    and 293 s instead of 196 s for k = 5000 on the MNIST test set on 2 cores
    (benchmarks/likelihood_speed.py). This sets, process-wide,
    M_TRIM_THRESHOLD = 1 GiB and M_MMAP_THRESHOLD = 32 MiB (glibc's maximum); elsewhere it
    does nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD


def likelihood_eval_step(params: Any, batch: Mapping[str, jax.Array], eval_key: jax.Array, *,
                         fns: ModelFns, binarize: str, num_samples: int, chunk: int,
                         axis_name: str | None = steps.AXIS) -> Mapping[str, jax.Array]:
    """`steps.eval_step`'s sums over the real (mask=1) examples plus 'nll': sum of -IWAE bound,
    and 'kl_groups' [G]: the sums of each latent group's KL term.

    Inputs are prepared as in `steps.eval_step` with the same keys, so 'dynamic' binarization
    draws the same fixed binary test set the ELBO sees.
    """
    sums = dict(steps.eval_step(params, batch, eval_key, fns=fns, binarize=binarize,
                                axis_name=None))
    keys = example_keys(eval_key, batch['index'])
    x, y = steps.prepare_inputs(batch, keys, binarize)
    # The same terms eval_step computed (same keys): XLA computes them once.
    kl_groups = elbo_terms(params, x, y, keys, fns)['kl_groups']
    sums['kl_groups'] = jnp.sum(kl_groups * batch['mask'][:, None], axis=0)
    bound = iwae_bound(params, x, y, keys, fns=fns, num_samples=num_samples, chunk=chunk)
    sums['nll'] = jnp.sum(-bound * batch['mask'])
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def evaluate_likelihood(params: Any, fns: ModelFns, source, config, key: jax.Array, *,
                        devices: Optional[Sequence[jax.Device]] = None,
                        progress: Optional[Callable[[int, int], None]] = None
                        ) -> dict[str, float]:
    """Mean test NLL (IWAE bound, k = config.eval.iwae_samples) beside the single-sample -ELBO.

    Args:
      params: model parameters (not replicated).
      fns: the model's functions; source: the split to evaluate.
      config: its `eval.iwae_samples`, `eval.iwae_chunk`, `eval.iwae_examples` (0 = all),
        `eval_batch_size` (global), `model` and `data.binarize` are read.
      key: evaluation key; `keys.run_keys(seed)[keys.EVAL]` gives the training loop's. With
        data.binarize='dynamic' the split is binarized once, deterministically, from it.
      devices: local devices to pmap over (default all); the result does not depend on them.
      progress: called as progress(examples_done, examples_total) after each global batch.

    Calls `retain_freed_memory` (process-wide malloc settings) first.

    Returns:
      {'nll', 'neg_elbo', 'recon', 'kl'}: nats per example; 'kl_groups': the KL of each latent
      group, nats per example (a list summing to 'kl'); 'count': examples evaluated.
    """
    retain_freed_memory()
    devices = list(devices or jax.local_devices())
    e = config.eval
    p_step = jax.pmap(
        functools.partial(likelihood_eval_step, fns=fns, binarize=config.data.binarize, num_samples=e.iwae_samples,
                          chunk=e.iwae_chunk),
        axis_name=steps.AXIS, in_axes=(0, 0, None), devices=devices)
    rparams = steps.replicate(params, devices)
    total = min(e.iwae_examples or source.num_examples, source.num_examples)
    totals, done = None, 0
    for batch in pipeline.eval_batches(
            source, global_batch=config.eval_batch_size, local_device_count=len(devices),
            process_index=jax.process_index(), process_count=jax.process_count(),
            max_examples=total):
        sums = p_step(rparams, batch, key)
        # float64 on the host: 10k sums of ~100 nats each.
        sums = {k: np.asarray(steps.unreplicate(v), np.float64) for k, v in sums.items()}
        totals = sums if totals is None else {k: totals[k] + sums[k] for k in sums}
        done = min(done + config.eval_batch_size, total)
        if progress is not None:
            progress(done, total)
    count = totals.pop('count')
    kl_groups = [float(v / count) for v in totals.pop('kl_groups')]
    return dict({k: float(v / count) for k, v in totals.items()}, kl_groups=kl_groups,
                count=int(count))
