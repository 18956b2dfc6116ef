"""`evaluate_run(workdir)`: every number and picture of the evaluation of one run.

Writes `results/eval_<step>.json` (`results.write_results`), PNGs under `images/` and
TensorBoard summaries under the tag prefix `report/`, leaving the training metrics
(metrics.jsonl) untouched.

What each number is computed on:
- the eval split of `data.registry` (MNIST-like: the test split; dSprites: the fixed held-out
  combinations; with `data.holdout_class=c`: the test examples of the other classes, with
  class c reported apart as 'likelihood_heldout' and its AUROC);
- with data.binarize='dynamic', the fixed binary draw of each split (`BinarizedSource`) that
  the model's eval -ELBO and IWAE bound also see: every number reads the inputs the model was
  trained on;
- the linear probe only for a model whose posterior does not read the label (not a CVAE).
"""

import os
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import images, pictures
from vae_jax.data.ground_truth import wants_metrics
from vae_jax.data.registry import train_and_evals
from vae_jax.data.subsets import BinarizedSource, MissingPixels, PerturbedPixels, Subset
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.errors import UserError
from vae_jax.evaluate import downstream, latents, likelihood
from vae_jax.keys import EVAL, PROBE, SAMPLE, example_keys, run_keys
from vae_jax.metric_writer import MetricWriter
from vae_jax.objectives import iwae_bound
from vae_jax.results import flat_scalars, write_results
from vae_jax.run import Run, load_run

# The out-of-distribution test set for each in-distribution dataset (same 28x28x1 shape).
OOD_DATASET = {'mnist': 'fashion_mnist', 'binarized_mnist': 'fashion_mnist',
               'fashion_mnist': 'mnist'}
MNIST_LIKE = ('mnist', 'binarized_mnist', 'fashion_mnist')
# Datasets whose pixels are already {0, 1}: the OOD data a model of them scores is binarized.
BINARY = ('binarized_mnist',)


def _progress(label: str):
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / max(done, 1) * (total - done)
        logging.info('%s: %d/%d examples, %.0f s elapsed, ETA %.0f s', label, done, total,
                     elapsed, eta)
    return report


def score_function(run: Run, key: jax.Array, k: int):
    """x [b, ...], y [b] -> -log p(x) bound [b] with k importance samples (anomaly score).

    Example i of every batch uses key fold_in(key, i): scores are deterministic; the noise is
    shared across batches, which leaves each bound unbiased.
    """
    chunk = min(k, run.config.eval.iwae_chunk)

    @jax.jit
    def score(params, x, y):
        keys = example_keys(key, jnp.arange(x.shape[0]))
        return -iwae_bound(params, x, y, keys, fns=run.fns, num_samples=k, chunk=chunk)
    return lambda x, y: score(run.params, jnp.asarray(x), jnp.asarray(y))


def encode_function(run: Run):
    """x, y -> (mean, logvar) with the run's parameters (labels used only by a CVAE)."""
    return lambda x, y: run.encode(x, y if run.config.model.conditional else None)


def complete(source):
    """The training split as the dataset holds it: `source` without the `MissingPixels` and
    `PerturbedPixels` wrappers of data.train_missing and data.train_perturb."""
    while isinstance(source, (MissingPixels, PerturbedPixels)):
        source = source.source
    return source


def as_trained(run: Run, source, key):
    """`source` as the model reads it: binarized (the fixed draw) with data.binarize='dynamic'."""
    return BinarizedSource(source, key) if run.config.data.binarize == 'dynamic' else source


def probe_sample(source, n: int):
    """A fixed uniform sample of n examples of `source` (all of it when n is 0 or larger),
    for fitting the linear probe: the first n of a grid-ordered dataset (dSprites) would all be
    one class."""
    if not n or n >= source.num_examples:
        return source
    rng = np.random.default_rng(PROBE)
    return Subset(source, np.sort(rng.choice(source.num_examples, n, replace=False)))


def anomaly_results(run: Run, test_source, key, max_examples) -> dict[str, Any]:
    """AUROC of OOD test data vs in-distribution test data, and of a held-out class.

    `test_source` is the eval split of `data.registry`: with data.holdout_class, the
    in-distribution classes only (`.source` is the whole test split).
    """
    data = run.config.data
    out: dict[str, Any] = {}
    if run.config.model.conditional or data.name not in MNIST_LIKE:
        return out  # a CVAE's p(x | y) has no label to condition on for OOD data
    score = score_function(run, key, run.config.eval.anomaly_samples)
    ood = OOD_DATASET[data.name]
    ood_source = TfdsSource(ood, 'test', data.data_dir or None)
    ood_source = (BinarizedSource(ood_source, key) if data.name in BINARY
                  else as_trained(run, ood_source, key))
    kw = dict(batch_size=run.config.eval_batch_size, max_examples=max_examples)
    out[f'ood_{ood}'] = downstream.ood_auroc(score, as_trained(run, test_source, key),
                                             ood_source, **kw)
    if data.holdout_class >= 0:
        whole_test = as_trained(run, test_source.source, key)
        out['heldout_class'] = downstream.heldout_class_auroc(score, whole_test,
                                                              data.holdout_class, **kw)
    return out


TEMPERATURES = (1.0, 0.85, 0.7, 0.5, 0.3)  # rows of the report's samples_by_temperature


def picture_set(run: Run, test_source, kl_per_dim: np.ndarray, key) -> dict[str, np.ndarray]:
    """Reconstructions, samples (also at the `TEMPERATURES`), interpolations, traversals (and
    2-D / CVAE pictures)."""
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
                                                latents=run.fns.latents)
    else:
        out['samples'] = images.grid(np.asarray(run.sample(key, 64)), rows=8)
        # One row of 10 per temperature, the same noise scaled: what t < 1 trades away.
        out['samples_by_temperature'] = images.grid(np.concatenate(
            [np.asarray(run.sample(key, 10, temperature=t)) for t in TEMPERATURES]),
            rows=len(TEMPERATURES))
    for method in ('linear', 'slerp'):
        out[f'interpolation_{method}'] = pictures.interpolation_picture(
            decode, encode, x[:8], x[8:], 10, y=y[:8] if cond else None, method=method)
    base = np.asarray(encode(x[:1], y[:1]))[0]
    out['traversal'] = pictures.traversal_picture(decode, base, kl_per_dim, 11, top=10,
                                                  y=y[:1] if cond else None)
    if run.fns.latents == 2 and not cond:
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
    train_source, evals = train_and_evals(config.data, config.seed)
    test_source = evals['eval']
    keys = run_keys(config.seed)
    limit = config.eval.iwae_examples or None
    logging.info('evaluating %s at step %d on %d test examples', run.workdir, run.step,
                 min(limit or test_source.num_examples, test_source.num_examples))

    results: dict[str, Any] = {}
    for name, source in evals.items():  # 'eval', and 'eval_heldout' with data.holdout_class
        section = 'likelihood' + name[len('eval'):]
        results[section] = likelihood.evaluate_likelihood(
            run.params, run.fns, source, config, keys[EVAL],
            progress=_progress(f'{name}: IWAE k={config.eval.iwae_samples}'))
        logging.info('%s: NLL %.3f nats (k=%d), -ELBO %.3f', name, results[section]['nll'],
                     config.eval.iwae_samples, results[section]['neg_elbo'])
    trained_test = as_trained(run, test_source, keys[EVAL])
    posteriors = latents.collect_posteriors(encode_function(run), trained_test,
                                            batch_size=config.eval_batch_size,
                                            max_examples=limit)
    results['latents'] = latents.posterior_stats(posteriors['mean'], posteriors['logvar'])
    results['latents']['groups'] = latents.group_stats(
        posteriors['mean'], results['likelihood']['kl_groups'], run.fns.groups)
    logging.info('active units: %d of %d', results['latents']['active_units'],
                 run.fns.latents)
    for g, group in enumerate(results['latents']['groups']):
        logging.info('latent group %d: %d latents, KL %.3f nats (%.1f%%), %d active', g,
                     group['latents'], group['kl'], 100 * group['kl_fraction'],
                     group['active_units'])
    if config.model.conditional:
        results['linear_probe'] = {'skipped': 'a conditional VAE encodes x together with its '
                                              'label, so a probe would read the label back'}
    elif train_source.num_classes > 0:
        # A held-out-class run trains and evaluates on ClassSubsets; the probe needs every class
        # (and complete images: a run with data.train_missing trains on MissingPixels).
        whole = lambda s: getattr(s, 'source', s)
        probe_train = probe_sample(as_trained(run, whole(complete(train_source)), keys[EVAL]),
                                   config.eval.probe_train_examples)
        results['linear_probe'] = downstream.probe_posterior_means(
            encode_function(run), probe_train, as_trained(run, whole(test_source), keys[EVAL]),
            batch_size=config.eval_batch_size, max_test=limit)
        logging.info('linear probe accuracy %.4f', results['linear_probe']['test_accuracy'])
    if wants_metrics(config, train_source):
        from vae_jax.evaluate import factor_report
        results['disentanglement'] = factor_report.disentanglement_metrics(
            run.fns, run.params, config, train_source)
        factor_report.log_scores(results['disentanglement'])
    results['anomaly'] = anomaly_results(run, test_source, keys[EVAL], limit)
    for name, r in results['anomaly'].items():
        if 'auroc' in r:
            logging.info('anomaly AUROC %s: %.4f', name, r['auroc'])

    results = write_results(run.workdir, run.step, results)
    writer = MetricWriter(run.workdir, start_step=None)
    try:
        writer.scalars(run.step, 'report', flat_scalars(results), jsonl=False)
        for name, picture in picture_set(run, test_source,
                                         np.asarray(results['latents']['kl_per_dim']),
                                         keys[SAMPLE]).items():
            writer.image(run.step, f'report_{name}', picture)
        if run.fns.latents == 2:
            writer.image(run.step, 'report_latent_scatter', pictures.latent_scatter(
                posteriors['mean'], posteriors['label'] if train_source.num_classes else None))
    finally:
        writer.close()
    logging.info('wrote %s/results/eval_%07d.json', run.workdir, run.step)
    return results
