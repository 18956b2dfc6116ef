"""The importance-weighted bound on log p(x) (Burda et al. 2015), streamed over sample chunks.

    log p(x) >= log (1/k) sum_j p(x, z_j) / q(z_j | x),   z_1..k ~ q(z | x),

tightening to log p(x) as k grows (k = 5000 is the usual test-set protocol). The k samples of
an example are drawn `chunk` at a time, and a running log-sum-exp (maximum and rescaled sum)
is carried from chunk to chunk, so memory is O(batch × chunk × pixels) whatever k is. The
encoder runs once per example; each chunk is one decoder call on batch × chunk latents.

Sample j of example i uses `objectives.iwae_sample_key(fold_in(key, i), j)` with i its index
in the evaluated split: the number depends on neither the batch size, the chunk size nor the
device count, and sample 0 is the very z of the single-sample ELBO evaluated with that key.
"""

import ctypes
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import objectives, steps
from vae_jax.data import pipeline
from vae_jax.models import VAE


def _log_likelihood(x, params, likelihood, log_scale):
    """`objectives.log_likelihood` of one example, on flattened pixels.

    Inside this double vmap XLA:CPU sums [28, 28, 1] some 40x slower than the same 784 values
    flat: the likelihood took 5x the time of the decoder; flat it takes ~10%.
    """
    return objectives.log_likelihood(x.reshape(-1), params.reshape(-1, params.shape[-1]),
                                     likelihood, log_scale)


def iwae_bound(params: Any, x: jax.Array, y: Optional[jax.Array], keys: jax.Array, *,
               num_samples: int, chunk: int, apply_fn: Callable, encode: Callable,
               decode: Callable, likelihood: str, log_scale: float) -> jax.Array:
    """The k-sample importance-weighted lower bound on log p(x) of each example.

    Args:
      params, x, y, apply_fn, encode, decode, likelihood, log_scale: see
        `objectives.elbo_terms`; x: [b, ...].
      keys: [b] one key per example, from its index in the split (`steps.example_keys`).
      num_samples: k >= 1.
      chunk: samples per example decoded together; the value does not depend on it.

    Returns:
      [b] nats: logsumexp_j log w_j - log k.
    """
    chunk = min(chunk, num_samples)
    mean, logvar = apply_fn({'params': params}, x, y, method=encode)
    log_weights = functools.partial(
        objectives.iwae_log_weights, params, x, y, mean, logvar, keys, apply_fn=apply_fn,
        decode=decode, likelihood=likelihood, log_scale=log_scale, log_lik_fn=_log_likelihood)

    def add_chunk(c, carry):
        run_max, run_sum = carry  # [b], [b]: log-sum-exp so far = run_max + log(run_sum)
        j = c * chunk + jnp.arange(chunk)
        log_w = jnp.where(j < num_samples, log_weights(j), -jnp.inf)  # [b, chunk]; pads masked
        new_max = jnp.maximum(run_max, jnp.max(log_w, axis=1))
        # Rescaling the sum to the new maximum keeps every exp <= 1: the weights themselves,
        # ~e^-100 for an MNIST digit, are below float32's smallest value.
        run_sum = (run_sum * jnp.exp(run_max - new_max)
                   + jnp.sum(jnp.exp(log_w - new_max[:, None]), axis=1))
        return new_max, run_sum

    init = (jnp.full(x.shape[:1], -jnp.inf, mean.dtype), jnp.zeros(x.shape[:1], mean.dtype))
    run_max, run_sum = jax.lax.fori_loop(0, -(-num_samples // chunk), add_chunk, init)
    return run_max + jnp.log(run_sum) - np.log(num_samples).astype(mean.dtype)


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
                         model: VAE, model_config, binarize: str, num_samples: int, chunk: int,
                         axis_name: str | None = steps.AXIS) -> Mapping[str, jax.Array]:
    """`steps.eval_step`'s sums over the real (mask=1) examples plus 'nll': sum of -IWAE bound.

    Inputs are prepared as in `steps.eval_step` with the same keys, so 'dynamic' binarization
    draws the same fixed binary test set the ELBO sees.
    """
    sums = dict(steps.eval_step(params, batch, eval_key, model=model, model_config=model_config,
                                binarize=binarize, axis_name=None))
    keys = steps.example_keys(eval_key, batch['index'])
    x, y = steps.prepare_inputs(batch, keys, binarize)
    bound = iwae_bound(params, x, y, keys, num_samples=num_samples, chunk=chunk,
                       apply_fn=model.apply, encode=model.encode, decode=model.decode,
                       likelihood=model_config.likelihood,
                       log_scale=jnp.log(model_config.gaussian_scale))
    sums['nll'] = jnp.sum(-bound * batch['mask'])
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def evaluate_likelihood(params: Any, model: VAE, source, config, key: jax.Array, *,
                        devices: Optional[Sequence[jax.Device]] = None,
                        progress: Optional[Callable[[int, int], None]] = None
                        ) -> dict[str, float]:
    """Mean test NLL (IWAE bound, k = config.eval.iwae_samples) beside the single-sample -ELBO.

    Args:
      params: model parameters (not replicated).
      model: the VAE `config.model` describes; source: the split to evaluate.
      config: its `eval.iwae_samples`, `eval.iwae_chunk`, `eval.iwae_examples` (0 = all),
        `eval_batch_size` (global), `model` and `data.binarize` are read.
      key: evaluation key; `train.run_keys(seed)[train.EVAL]` gives the training loop's. With
        data.binarize='dynamic' the split is binarized once, deterministically, from it.
      devices: local devices to pmap over (default all); the result does not depend on them.
      progress: called as progress(examples_done, examples_total) after each global batch.

    Calls `retain_freed_memory` (process-wide malloc settings) first.

    Returns:
      {'nll', 'neg_elbo', 'recon', 'kl'}: nats per example; 'count': examples evaluated.
    """
    retain_freed_memory()
    devices = list(devices or jax.local_devices())
    e = config.eval
    p_step = jax.pmap(
        functools.partial(likelihood_eval_step, model=model, model_config=config.model,
                          binarize=config.data.binarize, num_samples=e.iwae_samples,
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
    return dict({k: float(v / count) for k, v in totals.items()}, count=int(count))
