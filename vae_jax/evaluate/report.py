"""`evaluate_run(workdir)`: every number and picture of the evaluation of one run.

Writes `results/eval_<step>.json`, PNGs under `images/` and TensorBoard summaries under the
tag prefix `report/`, leaving the training metrics (metrics.jsonl) untouched.
"""

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import steps
from vae_jax.data.registry import make_sources
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.errors import UserError
from vae_jax.evaluate import downstream, images, latents, likelihood, pictures
from vae_jax.run import Run, load_run
from vae_jax.train import EVAL, SAMPLE, run_keys, wanted_metrics
from vae_jax.results import flat_scalars
from vae_jax.metric_writer import MetricWriter
from vae_jax.workdir import write_atomic

# The out-of-distribution test set for each in-distribution dataset (same 28x28x1 shape).
OOD_DATASET = {'mnist': 'fashion_mnist', 'binarized_mnist': 'fashion_mnist',
               'fashion_mnist': 'mnist'}
MNIST_LIKE = ('mnist', 'binarized_mnist', 'fashion_mnist')


def _progress(label: str):
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / max(done, 1) * (total - done)
        logging.info('%s: %d/%d examples, %.0f s elapsed, ETA %.0f s', label, done, total,
                     elapsed, eta)
    return report


def score_function(run: Run, key: jax.Array, k: int, binarize: bool):
    """x [b, ...], y [b] -> -log p(x) bound [b] with k importance samples (anomaly score).

    With `binarize`, pixels are first drawn ~ Bernoulli(intensity) (a model trained on binary
    images scores binary images). Example i of every batch uses key fold_in(key, i): scores
    are deterministic; the noise is shared across batches, which leaves each bound unbiased.
    """
    conditional = run.config.model.conditional
    chunk = min(k, run.config.eval.iwae_chunk)

    @jax.jit
    def score(params, x, y):
        keys = steps.example_keys(key, jnp.arange(x.shape[0]))
        if binarize:
            x, _ = steps.prepare_inputs({'image': x, 'label': y}, keys, 'dynamic')
        bound = likelihood.iwae_bound(
            params, x, y if conditional else None, keys, num_samples=k, chunk=chunk,
            apply_fn=run.model.apply, encode=run.model.encode, decode=run.model.decode,
            likelihood=run.config.model.likelihood,
            log_scale=jnp.log(run.config.model.gaussian_scale))
        return -bound
    return lambda x, y: score(run.params, jnp.asarray(x), jnp.asarray(y))


def encode_function(run: Run):
    """x, y -> (mean, logvar) with the run's parameters (labels used only by a CVAE)."""
    return lambda x, y: run.encode(x, y if run.config.model.conditional else None)


def anomaly_results(run: Run, test_source, key, max_examples) -> dict[str, Any]:
    """AUROC of OOD test data vs in-distribution test data, and of a held-out class."""
    data = run.config.data
    out: dict[str, Any] = {}
    if run.config.model.conditional or data.name not in MNIST_LIKE:
        return out  # a CVAE's p(x | y) has no label to condition on for OOD data
    binary = data.name == 'binarized_mnist' or data.binarize == 'dynamic'
    score = score_function(run, key, run.config.eval.anomaly_samples, binary)
    ood = OOD_DATASET[data.name]
    ood_source = TfdsSource(ood, 'test', data.data_dir or None)
    kw = dict(batch_size=run.config.eval_batch_size, max_examples=max_examples)
    twin = TfdsSource('fashion_mnist' if ood == 'mnist' else 'mnist', 'test',
                      data.data_dir or None)
    first = np.arange(64)
    if np.array_equal(ood_source.get_batch(first)['image'], twin.get_batch(first)['image']):
        # A mislabelled data_dir (one dataset prepared under the other's name) would make this
        # an in-distribution-vs-itself AUROC of 0.5 that looks like a result.
        reason = (f'the {ood} test split in {ood_source.data_dir} holds the same images as '
                  f'{twin.name}; re-prepare it')
        logging.warning('skipping the OOD AUROC: %s', reason)
        out[f'ood_{ood}'] = {'skipped': reason}
    else:
        out[f'ood_{ood}'] = downstream.ood_auroc(score, test_source, ood_source, **kw)
    if data.holdout_class >= 0:
        out['heldout_class'] = downstream.heldout_class_auroc(score, test_source,
                                                              data.holdout_class, **kw)
    return out


def picture_set(run: Run, test_source, kl_per_dim: np.ndarray, key) -> dict[str, np.ndarray]:
    """Reconstructions, samples, interpolations, traversals (and 2-D / CVAE pictures)."""
    if len(run.example_shape) != 3:
        return {}
    cond = run.config.model.conditional
    decode = lambda z, y: run.decode(z, y if cond else None)
    encode = lambda x, y: run.encode(x, y if cond else None)[0]
    n = test_source.num_examples
    batch = test_source.get_batch(np.linspace(0, n - 1, 16).astype(np.int64))
    x, y = batch['image'], batch['label']
    out = {'reconstructions': images.side_by_side(x[:8], np.asarray(run.reconstruct(
        x[:8], y[:8] if cond else None)))}
    if cond:
        out['samples'] = pictures.class_picture(key, decode, np.arange(run.num_classes), 10,
                                                latents=run.config.model.latents)
    else:
        out['samples'] = images.grid(np.asarray(run.sample(key, 64)), rows=8)
    for method in ('linear', 'slerp'):
        out[f'interpolation_{method}'] = pictures.interpolation_picture(
            decode, encode, x[:8], x[8:], 10, y=y[:8] if cond else None, method=method)
    base = np.asarray(encode(x[:1], y[:1]))[0]
    out['traversal'] = pictures.traversal_picture(decode, base, kl_per_dim, 11, top=10,
                                                  y=y[:1] if cond else None)
    if run.config.model.latents == 2 and not cond:
        out['manifold'] = pictures.manifold_picture(decode, 20)
    return out


def evaluate_run(workdir: str | Path, *, iwae_samples: Optional[int] = None,
                 max_examples: Optional[int] = None, step: Optional[int] = None) -> dict:
    """Evaluates the run in `workdir` (latest checkpoint, or `step`) and writes the results.

    Args:
      workdir: a vae_jax run directory (finished or still training).
      iwae_samples: k of the test NLL bound; default config.eval.iwae_samples.
      max_examples: evaluate only the first N test examples (default: the whole split).

    Returns:
      The results dictionary that was written to results/eval_<step>.json.
    """
    run = load_run(workdir, step)
    config = run.config
    for target in (run.workdir, run.workdir / 'results', run.workdir / 'images'):
        if target.exists() and not os.access(target, os.W_OK | os.X_OK):
            raise UserError(f'cannot write the evaluation: {target} is not writable (copy the '
                            f'run somewhere writable, or evaluate it in a notebook: '
                            f'vae_jax.load_run)')
    if max_examples is not None and max_examples < 1:
        raise UserError(f'--eval_examples must be >= 1, got {max_examples}')
    if iwae_samples is not None:
        if iwae_samples < 1:
            raise UserError(f'--iwae_samples must be >= 1, got {iwae_samples}')
        config.eval.iwae_samples = iwae_samples
        config.eval.iwae_chunk = min(config.eval.iwae_chunk, iwae_samples)
    if max_examples is not None:
        config.eval.iwae_examples = max_examples
    train_source, test_source = make_sources(config.data, config.seed)
    keys = run_keys(config.seed)
    limit = config.eval.iwae_examples or None
    logging.info('evaluating %s at step %d on %d test examples', run.workdir, run.step,
                 min(limit or test_source.num_examples, test_source.num_examples))

    results: dict[str, Any] = {'step': run.step, 'workdir': str(run.workdir)}
    results['likelihood'] = likelihood.evaluate_likelihood(
        run.params, run.model, test_source, config, keys[EVAL],
        progress=_progress(f'IWAE k={config.eval.iwae_samples}'))
    logging.info('test NLL %.3f nats (k=%d), -ELBO %.3f', results['likelihood']['nll'],
                 config.eval.iwae_samples, results['likelihood']['neg_elbo'])
    posteriors = latents.collect_posteriors(encode_function(run), test_source,
                                            batch_size=config.eval_batch_size,
                                            max_examples=limit)
    results['latents'] = latents.posterior_stats(posteriors['mean'], posteriors['logvar'])
    logging.info('active units: %d of %d', results['latents']['active_units'],
                 config.model.latents)
    if train_source.num_classes > 0:
        # A held-out-class run trains on a ClassSubset; the probe needs every class.
        probe_train = getattr(train_source, 'source', train_source)
        results['linear_probe'] = downstream.probe_posterior_means(
            encode_function(run), probe_train, test_source, batch_size=config.eval_batch_size,
            max_train=config.eval.probe_train_examples or None, max_test=limit)
        logging.info('linear probe accuracy %.4f', results['linear_probe']['test_accuracy'])
    if wanted_metrics(config, train_source):
        from vae_jax.evaluate import factor_report
        results['disentanglement'] = factor_report.disentanglement_metrics(
            run.model, run.params, config, train_source)
        factor_report.log_scores(results['disentanglement'])
    results['anomaly'] = anomaly_results(run, test_source, keys[EVAL], limit)
    for name, r in results['anomaly'].items():
        if 'auroc' in r:
            logging.info('anomaly AUROC %s: %.4f', name, r['auroc'])

    out_dir = run.workdir / 'results'
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f'eval_{run.step:07d}.json'
    write_atomic(path, json.dumps(results, indent=2) + '\n')
    writer = MetricWriter(run.workdir, start_step=None)
    try:
        writer.scalars(run.step, 'report', flat_scalars(results), jsonl=False)
        for name, picture in picture_set(run, test_source,
                                         np.asarray(results['latents']['kl_per_dim']),
                                         keys[SAMPLE]).items():
            writer.image(run.step, f'report_{name}', picture)
        if config.model.latents == 2:
            writer.image(run.step, 'report_latent_scatter', pictures.latent_scatter(
                posteriors['mean'], posteriors['label'] if train_source.num_classes else None))
    finally:
        writer.close()
    logging.info('wrote %s', path)
    return results
