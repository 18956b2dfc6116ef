"""Sample quality: the Fréchet distance and precision/recall between generated and test images,
on the features of the dataset's cached classifier (`classifier.feature_extractor`).

    python -m vae_jax.evaluate.sample_quality --workdir=runs/comparison/vae
    python -m vae_jax.evaluate.sample_quality --workdir=runs/comparison/hvae --temperatures=1,0.85,0.7

- `frechet_distance`: ||μ1 − μ2||² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) between the Gaussians fitted to
  two feature sets (Heusel et al. 2017's FID, here with the dataset's own classifier instead
  of Inception, so the numbers compare runs of one dataset, not with published FIDs).
- `precision_recall`: Kynkäänniemi et al. 2019: precision is the fraction of generated samples
  inside the real manifold (the union of balls reaching each real sample's k-th nearest real
  neighbour), recall the fraction of real samples inside the generated one.

The command scores `samples` draws of the prior at each temperature (a binary model's images
are Bernoulli draws of its decoded means, as the test images are binary) against as many
images of the run's test split (as the run reads them), and as many of its training images
against the same test images: the floor a perfect model reaches with that many samples.
Section 'sample_quality' of results/eval_<step>.json (merged).
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from vae_jax.errors import UserError, run_command
from vae_jax.evaluate import classifier
from vae_jax.data.registry import train_and_evals
from vae_jax.evaluate.report import as_trained, complete
from vae_jax.keys import EVAL, SAMPLE, run_keys
from vae_jax.results import write_results
from vae_jax.run import Run, load_run

K_NEAREST = 3  # Kynkäänniemi et al.'s default
QUALITY = 11   # fold_in(sample_key, ·): the draws of this evaluation


# -- the scores ---------------------------------------------------------------------------------
def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """feats [n, d] -> (mean [d], covariance [d, d]) in float64 (unbiased, ddof = 1)."""
    f = np.asarray(feats, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet (2-Wasserstein) distance² between N(mu1, sigma1) and N(mu2, sigma2).

    tr((Σ1 Σ2)^½) is computed as Σ √λ over the eigenvalues λ of the symmetric Σ1^½ Σ2 Σ1^½,
    which has the same spectrum, so no non-symmetric square root (and no complex round-off)
    is needed; eigenvalues that round to < 0 are clipped to 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_root = np.sum(np.sqrt(np.clip(lam, 0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_root)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0.0)


def _kth_radius(feats: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row: [n]."""
    radii = np.empty(len(feats))
    for s in range(0, len(feats), chunk):
        d = _sq_dists(feats[s:s + chunk], feats)
        radii[s:s + chunk] = np.partition(d, k, axis=1)[:, k]  # index 0 is the row itself
    return radii


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int) -> np.ndarray:
    """Whether each point lies in some ball (centre, radius²): bool [m]."""
    return np.concatenate([(_sq_dists(points[s:s + chunk], centres) <= radii[None]).any(1)
                           for s in range(0, len(points), chunk)])


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST,
                     chunk: int = 1000) -> dict[str, float]:
    """Kynkäänniemi et al.'s improved precision and recall: real [n, d], fake [m, d] features
    -> {'precision', 'recall'} in [0, 1]."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(len(real), len(fake)) <= k:
        raise UserError(f'precision/recall with k={k} needs more than {k} samples of each set')
    precision = _inside(fake, real, _kth_radius(real, k, chunk), chunk).mean()
    recall = _inside(real, fake, _kth_radius(fake, k, chunk), chunk).mean()
    return {'precision': float(precision), 'recall': float(recall)}


def compare(real_feats: np.ndarray, fake_feats: np.ndarray) -> dict[str, float]:
    """{'frechet_distance', 'precision', 'recall'} of two feature sets."""
    return dict(frechet_distance=frechet_distance(*gaussian_stats(real_feats),
                                                  *gaussian_stats(fake_feats)),
                **precision_recall(real_feats, fake_feats))


# -- a run's samples ------------------------------------------------------------------------------
def generate(run: Run, key: jax.Array, n: int, temperature: float, binary: bool,
             batch_size: int = 500) -> np.ndarray:
    """n images from the prior at `temperature` [n, *example_shape]: decoded means, or their
    Bernoulli draw when `binary`. A conditional model gets labels 0, 1, 2, ... in turn."""
    out = []
    for i, s in enumerate(range(0, n, batch_size)):
        m = min(batch_size, n - s)
        k_z, k_x = jax.random.split(jax.random.fold_in(key, i))
        y = np.arange(s, s + m) % run.num_classes if run.config.model.conditional else None
        means = run.sample(k_z, m, y, temperature=temperature)
        out.append(np.asarray(jax.random.bernoulli(k_x, means).astype(jnp.float32) if binary
                              else means))
    return np.concatenate(out)


def _features(params, images: np.ndarray, num_classes: int, batch_size: int = 1000):
    return np.concatenate([np.asarray(classifier.features(params, images[s:s + batch_size],
                                                          num_classes))
                           for s in range(0, len(images), batch_size)])


def score_run(workdir: str, temperatures: Sequence[float] = (1.0,), samples: int = 10_000,
              step: int | None = None) -> dict[str, Any]:
    """Scores the run's samples at each temperature; returns (and writes) section
    'sample_quality'."""
    if samples < K_NEAREST + 1:
        raise UserError(f'--samples must be > {K_NEAREST}, got {samples}')
    if not temperatures or any(t <= 0 for t in temperatures):
        raise UserError(f'--temperatures must be positive numbers, got {list(temperatures)}')
    run = load_run(workdir, step)
    if len(run.example_shape) != 3:
        raise UserError(f'sample quality needs image data; {run.config.data.name} examples have '
                        f'shape {run.example_shape}')
    params, info = classifier.feature_extractor(run.config.data)
    classes = params['Dense_2']['bias'].shape[0]  # the classifier's output layer
    # The images the run was trained and is evaluated on (a dynamically binarized run's fixed
    # draws), as every evaluation reads them.
    eval_key = run_keys(run.config.seed)[EVAL]
    train_source, evals = train_and_evals(run.config.data, run.config.seed)
    train_source = as_trained(run, complete(train_source), eval_key)
    test_source = as_trained(run, evals['eval'], eval_key)
    n = min(samples, test_source.num_examples, train_source.num_examples)
    real = _features(params, test_source.get_batch(np.arange(n))['image'], classes)
    pick = np.random.default_rng(0).choice(train_source.num_examples, n, replace=False)
    floor = compare(real, _features(params, train_source.get_batch(np.sort(pick))['image'],
                                    classes))
    key = jax.random.fold_in(run_keys(run.config.seed)[SAMPLE], QUALITY)
    results: dict[str, Any] = {
        'samples': n, 'binary': classifier.binary_images(run.config.data),
        'classifier': {k: info[k] for k in ('version', 'dataset', 'test_accuracy')},
        'train_vs_test': floor, 'temperatures': {}}
    logging.info('training images vs test: %s', floor)
    for t in temperatures:
        fake = generate(run, key, n, t, results['binary'])
        results['temperatures'][f'{t:g}'] = compare(real, _features(params, fake, classes))
        logging.info('temperature %g: %s', t, results['temperatures'][f'{t:g}'])
    write_results(run.workdir, run.step, {'sample_quality': results})
    return results


def table(results: dict[str, Any]) -> str:
    lines = ['| samples | Fréchet distance | precision | recall |', '|---|---|---|---|']
    rows = [('training images', results['train_vs_test'])] + [
        (f'temperature {t}', r) for t, r in results['temperatures'].items()]
    for name, r in rows:
        lines.append(f"| {name} | {r['frechet_distance']:.2f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} |")
    return '\n'.join(lines)


def define_flags() -> None:
    """The command's flags, defined only when it runs (the module stays importable beside
    other commands)."""
    flags.DEFINE_string('workdir', None, 'the run to score')
    flags.DEFINE_list('temperatures', ['1.0'], 'prior temperatures')
    flags.DEFINE_integer('samples', 10_000, 'generated and test images compared')
    flags.DEFINE_integer('step', None, 'checkpoint step (default: the newest readable one)')


def main() -> None:
    F = flags.FLAGS
    if not F.workdir:
        raise UserError('--workdir is required')
    try:
        temperatures = [float(t) for t in F.temperatures]
    except ValueError:
        raise UserError(f'--temperatures must be numbers, got {F.temperatures}') from None
    results = score_run(F.workdir, temperatures, F.samples, F.step)
    print(table(results), flush=True)


if __name__ == '__main__':
    run_command(define_flags, main)
