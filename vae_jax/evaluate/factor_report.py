"""Disentanglement metrics of a trained model, for datasets with ground-truth factors.

Run at the end of training (`train.train_and_evaluate`) and by `--mode=eval`
(`report.evaluate_run`). The representation is the posterior mean, as in disentanglement_lib.
Results go to `results/eval_<step>.json` (through `results.write_results`) under
'disentanglement' (with the posterior statistics under 'latents'), to TensorBoard under 'disentanglement/...', and the latent
traversal ordered by KL to `images/traversal_<step>.png`.
"""

import os
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import numpy as np
from absl import logging

from vae_jax import pictures
from vae_jax.data.ground_truth import as_ground_truth
from vae_jax.data.registry import make_sources
from vae_jax.errors import UserError
from vae_jax.evaluate import latents
from vae_jax.evaluate.disentanglement import METRIC_NAMES, compute_metrics
from vae_jax.metric_writer import MetricWriter
from vae_jax.results import flat_scalars, read_results, write_results
from vae_jax.run import load_run

# Examples the metrics hand `represent` at a time (they are asked to use chunks of this size).
CHUNK = 1024
# Examples per jitted encode call; every call is padded to it, so encode compiles once. On a
# CPU the dSprites conv encoder runs 9,900 images/s in calls of 128 against 6,600 in calls of
# 1,024 (2 cores: larger convolutions fall out of cache), the MLP encoder 220,000 against
# 288,000 (`python benchmarks/conv_layers.py`); accelerators take the larger calls. Since
# malloc's arena limit (`allocator`), with the β-VAE's flags, calls of 512 ran 8,941 images/s
# against 7,836 in calls of 128 (`conv_layers.py --quick --beta_vae_flags`, 2026-12-03), but
# a one-off alternating comparison of the quick β-VAE run's five metrics (in the note)
# showed no gain beyond its noise, so 128 stays.
ENCODE_BATCH = {'cpu_conv': 128, 'other': 1024}


def representation_function(fns, params, batch: Optional[int] = None) -> Callable:
    """observations [n, *example_shape] -> posterior means [n, z] (numpy), `batch` at a time
    (by default ENCODE_BATCH for the model's encoder and backend)."""
    if batch is None:
        conv = getattr(getattr(fns.module, 'encoder', None), 'convolutional', False)
        cpu_conv = conv and jax.default_backend() == 'cpu'
        batch = ENCODE_BATCH['cpu_conv' if cpu_conv else 'other']
    encode = jax.jit(lambda p, x: fns.encode(p, x)[0])

    def represent(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        out = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch]
            real = len(part)
            if real < batch:
                part = np.concatenate([part, np.zeros((batch - real, *part.shape[1:]), part.dtype)])
            out.append(np.asarray(encode(params, part))[:real])
        return np.concatenate(out)
    return represent


def has_results(workdir: Path, step: int) -> bool:
    """Whether `results/eval_<step>.json` already holds disentanglement metrics."""
    return 'disentanglement' in read_results(workdir, step)


def disentanglement_metrics(fns, params, config, train_source,
                            progress: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """The configured metrics (`config.disentanglement`) of the posterior means.

    DCI's per-factor classifiers are fitted in parallel over the CPU cores (same result).

    Returns:
      {metric name: {score name: float, ...}} or {'skipped': reason}.
    """
    if config.model.conditional:
        return {'skipped': 'a conditional model has no label-free representation'}
    d = config.disentanglement
    logging.info('disentanglement metrics %s (%d train / %d test points)',
                 ', '.join(d.metrics), d.num_train, d.num_test)
    return compute_metrics(
        as_ground_truth(train_source), representation_function(fns, params),
        tuple(d.metrics), seed=d.seed, num_train=d.num_train, num_test=d.num_test,
        batch_size=d.batch_size, num_variance_estimate=d.num_variance_estimate,
        num_bins=d.num_bins, progress=progress, n_jobs=os.cpu_count() or 1, chunk=CHUNK)


def traversal(fns, params, eval_source, kl_per_dim) -> np.ndarray:
    """Traversals of the first eval example's posterior mean, dimensions ordered by KL."""
    x = eval_source.get_batch(np.zeros(1, np.int64))['image']
    base = np.asarray(fns.encode(params, x)[0])[0]
    decode_mean = lambda z, y=None: fns.decode_mean(params, z)
    return pictures.traversal_picture(decode_mean, base, kl_per_dim, 11, top=10)


def evaluate_and_write(fns, params, config, train_source, eval_source, workdir: Path,
                       step: int, writer) -> dict[str, Any]:
    """End-of-training evaluation: metrics, posterior statistics and the traversal picture.

    Writes `results/eval_<step>.json` (process 0 only, through `writer.enabled`) and the
    TensorBoard scalars and image; returns the results.
    """
    results: dict[str, Any] = {}
    results['disentanglement'] = disentanglement_metrics(fns, params, config, train_source)
    encode = jax.jit(lambda x, y: fns.encode(params, x))
    posteriors = latents.collect_posteriors(encode, eval_source,
                                            batch_size=config.eval_batch_size,
                                            max_examples=config.eval_examples or None)
    results['latents'] = latents.posterior_stats(posteriors['mean'], posteriors['logvar'])
    log_scores(results['disentanglement'])
    if writer.enabled:
        results = write_results(workdir, step, results)  # keeps --mode=eval's other sections
        writer.scalars(step, 'disentanglement', flat_scores(results['disentanglement']),
                       jsonl=False)
        writer.image(step, 'traversal', traversal(fns, params, eval_source,
                                                  np.asarray(results['latents']['kl_per_dim'])))
        logging.info('wrote the disentanglement metrics of step %d to %s/results', step,
                     workdir)
    return results


# Sample sizes and timings: recorded in the results JSON, not plotted or logged as scores.
_NOT_SCORES = ('num_train', 'num_eval', 'num_test', 'num_bins', 'batch_size',
               'num_variance_estimate', 'wall_time_s')


def evaluate_workdir(workdir, step: Optional[int] = None) -> dict[str, Any]:
    """The metrics of the run in `workdir` (latest checkpoint, or `step`), written as at the
    end of training: `python launch.py --mode=metrics --workdir=...`."""
    run = load_run(workdir, step)
    train_source, eval_source = make_sources(run.config.data, run.config.seed)
    if as_ground_truth(train_source) is None:
        raise UserError(f'{run.config.data.name} has no ground-truth factors; disentanglement '
                        f'metrics need a dataset such as dsprites')
    if not run.config.disentanglement.metrics:
        run.config.disentanglement.metrics = METRIC_NAMES
    writer = MetricWriter(run.workdir, start_step=None)
    try:
        return evaluate_and_write(run.fns, run.params, run.config, train_source, eval_source,
                                  run.workdir, run.step, writer)
    finally:
        writer.close()


def flat_scores(metrics: dict) -> dict[str, float]:
    """{'mig': {'mig': 0.1, 'num_train': 10000}} -> {'mig/mig': 0.1}: the scalar scores only."""
    return {k: v for k, v in flat_scalars(metrics).items()
            if k.rsplit('/', 1)[-1] not in _NOT_SCORES}


def log_scores(metrics: dict) -> None:
    scores = flat_scores(metrics)
    logging.info('disentanglement: %s', ', '.join(f'{k} {v:.3f}' for k, v in scores.items()))
