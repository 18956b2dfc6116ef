"""Out-of-distribution scores beyond the likelihood, and the command that compares them.

    python -m vae_jax.evaluate.ood --workdir=runs/ood/fashion --background=runs/ood/fashion_bg

A likelihood model can assign *higher* likelihood to another dataset (Nalisnick et al. 2019: a
model of Fashion-MNIST scores MNIST digits above its own test images), because the likelihood
is dominated by low-level statistics (how many pixels are on) rather than content. Each score
here is an anomaly score (higher = more anomalous), per example, in nats:

- 'likelihood': −log p(x) (the k-sample IWAE bound): the baseline that fails.
- 'typicality': |−log p(x) − H|, H the mean −log p of training images (the per-example form
  of Nalisnick et al. 2019b's typicality test): atypically *likely* inputs are anomalous too.
- 'complexity': −log p(x) − L(x), L(x) the length of the image's PNG encoding in nats
  (Serrà et al. 2020): a generic compressor's code length stands in for the part of the
  likelihood any model of images would assign.
- 'likelihood_ratio': −log p(x) + log p_bg(x) (Ren et al. 2019), p_bg a background model of
  the same data with noise in a fraction of the pixels (`data.train_perturb`): the ratio
  cancels the population-level statistics both models learn.

The command scores the run's test split (in) against the other dataset's test split and, for a
run with data.holdout_class, the held-out class; section 'ood' of results/eval_<step>.json has
each score's AUROC in each setting, images/ood_scores_<step>.png their histograms.
"""

import io
from typing import Any, Callable

import numpy as np
from absl import flags, logging
from PIL import Image

from vae_jax.data.registry import train_and_evals
from vae_jax.data.subsets import BinarizedSource, ClassSubset
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.errors import UserError, run_command
from vae_jax.evaluate import downstream
from vae_jax.evaluate.report import BINARY, OOD_DATASET, as_trained, complete, score_function
from vae_jax.keys import EVAL, run_keys
from vae_jax.metric_writer import MetricWriter
from vae_jax.results import write_results
from vae_jax.run import Run, load_run

SCORES = ('likelihood', 'typicality', 'complexity', 'likelihood_ratio')


# -- the scores ---------------------------------------------------------------------------------
def png_nats(image: np.ndarray) -> float:
    """The length of `image` [h, w, c] in [0, 1], quantised to 8 bits, as a PNG (zlib level 9),
    in nats: Serrà et al.'s complexity estimate L(x)."""
    pixels = np.asarray(np.clip(image, 0, 1) * 255 + 0.5, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
        buffer, format='png', compress_level=9)
    return 8 * len(buffer.getvalue()) * float(np.log(2))


def anomaly_scores(nll: np.ndarray, *, train_nll_mean: float, png: np.ndarray,
                   nll_background: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every score of `SCORES` (the likelihood ratio only with a background model) of examples
    with −log p(x) `nll` [n], PNG lengths `png` [n] and background −log p_bg(x) [n]."""
    nll = np.asarray(nll, np.float64)
    scores = {'likelihood': nll, 'typicality': np.abs(nll - train_nll_mean),
              'complexity': nll - np.asarray(png, np.float64)}
    if nll_background is not None:
        scores['likelihood_ratio'] = nll - np.asarray(nll_background, np.float64)
    return scores


# -- the command ----------------------------------------------------------------------------------
def _images(source, n: int) -> dict:
    return source.get_batch(np.arange(min(n, source.num_examples)))


def _nll(score: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.asarray(score(images[s:s + batch_size], labels[s:s + batch_size]))
                           for s in range(0, len(images), batch_size)]).astype(np.float64)


def settings(run: Run, examples: int) -> dict[str, tuple[dict, dict]]:
    """{name: (in batch, out batch)}: 'ood_<dataset>' (the other dataset's test images), and
    'heldout_class' with data.holdout_class; images as the run reads them."""
    data = run.config.data
    if data.name not in OOD_DATASET:
        raise UserError(f'no out-of-distribution dataset for {data.name}; have '
                        f'{", ".join(OOD_DATASET)}')
    key = run_keys(run.config.seed)[EVAL]
    _, evals = train_and_evals(data, run.config.seed)
    test = evals['eval']
    ood = OOD_DATASET[data.name]
    out_source = TfdsSource(ood, 'test', data.data_dir or None)
    out_source = (BinarizedSource(out_source, key) if data.name in BINARY
                  else as_trained(run, out_source, key))
    found = {f'ood_{ood}': (_images(as_trained(run, test, key), examples),
                            _images(out_source, examples))}
    if data.holdout_class >= 0:
        whole = as_trained(run, test.source, key)
        c = data.holdout_class
        found['heldout_class'] = (_images(ClassSubset(whole, exclude=(c,)), examples),
                                  _images(ClassSubset(whole, only=(c,)), examples))
    return found


def _check_background(run: Run, background: Run) -> None:
    a, b = run.config.data, background.config.data
    if ((a.name, a.binarize) != (b.name, b.binarize)
            or run.example_shape != background.example_shape):
        raise UserError(f'the background run models {b.name} (binarize={b.binarize!r}), the run '
                        f'{a.name} (binarize={a.binarize!r}): they must model the same data')
    if b.get('train_perturb', 0.0) <= 0:
        logging.warning('the background run was trained without data.train_perturb: its '
                        'likelihood ratio is that of two models of the same clean data')


def histogram_picture(scores: dict[str, tuple[np.ndarray, np.ndarray]], aurocs: dict) -> np.ndarray:
    """One panel per score: histograms of the in- and out-of-distribution scores."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3.2 * len(scores), 2.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (name, (s_in, s_out)) in enumerate(scores.items()):
        ax = fig.add_subplot(1, len(scores), i + 1)
        bins = np.histogram_bin_edges(np.concatenate([s_in, s_out]), 40)
        ax.hist(s_in, bins, alpha=0.6, label='in', density=True)
        ax.hist(s_out, bins, alpha=0.6, label='out', density=True)
        ax.set_title(f'{name}\nAUROC {aurocs[name]:.3f}', fontsize=9)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255


def evaluate_ood(workdir: str, background: str | None = None, examples: int = 2000,
                 k: int = 100, train_examples: int = 2000) -> dict[str, Any]:
    """Every score's AUROC in every setting of the run; returns (and writes) section 'ood'."""
    if min(examples, k, train_examples) < 1:
        raise UserError(f'--examples, --k and --train_examples must be >= 1, got {examples}, '
                        f'{k}, {train_examples}')
    run = load_run(workdir)
    bg = load_run(background) if background else None
    if bg is not None:
        _check_background(run, bg)
    key = run_keys(run.config.seed)[EVAL]
    batch_size = run.config.eval_batch_size
    score, score_bg = score_function(run, key, k), bg and score_function(bg, key, k)
    train_source, _ = train_and_evals(run.config.data, run.config.seed)
    train = _images(as_trained(run, complete(train_source), key), train_examples)
    train_nll_mean = float(np.mean(_nll(score, train['image'], train['label'], batch_size)))

    def all_scores(batch):
        nll = _nll(score, batch['image'], batch['label'], batch_size)
        png = np.array([png_nats(x) for x in batch['image']])
        nll_bg = None if bg is None else _nll(score_bg, batch['image'], batch['label'], batch_size)
        return anomaly_scores(nll, train_nll_mean=train_nll_mean, png=png, nll_background=nll_bg)

    results: dict[str, Any] = {'k': k, 'train_nll_mean': train_nll_mean,
                               'background': str(bg.workdir) if bg else None, 'settings': {}}
    pictures = {}
    for name, (inside, outside) in settings(run, examples).items():
        s_in, s_out = all_scores(inside), all_scores(outside)
        section = {s: downstream.auroc_summary(s_in[s], s_out[s]) for s in s_in}
        results['settings'][name] = section
        logging.info('%s: %s', name, ', '.join(f'{s} AUROC {r["auroc"]:.3f}'
                                                for s, r in section.items()))
        pictures[name] = histogram_picture({s: (s_in[s], s_out[s]) for s in s_in},
                                           {s: r['auroc'] for s, r in section.items()})
    write_results(run.workdir, run.step, {'ood': results})
    writer = MetricWriter(run.workdir, start_step=None)
    try:
        for name, picture in pictures.items():
            writer.image(run.step, f'ood_{name}', picture)
    finally:
        writer.close()
    return results


def table(results: dict[str, Any]) -> str:
    names = list(next(iter(results['settings'].values())))
    lines = ['| setting | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
    for setting, section in results['settings'].items():
        lines.append(f'| {setting} | ' + ' | '.join(f"{section[n]['auroc']:.3f}" for n in names)
                     + ' |')
    return '\n'.join(lines)


def define_flags() -> None:
    """The command's flags, defined only when it runs (the module stays importable beside
    other commands)."""
    flags.DEFINE_string('workdir', None, 'the run to evaluate')
    flags.DEFINE_string('background', None, 'the background run of the likelihood '
                        'ratio (trained with data.train_perturb)')
    flags.DEFINE_integer('examples', 2000, 'in- and out-of-distribution images each')
    flags.DEFINE_integer('k', 100, 'importance samples of the likelihood bound')
    flags.DEFINE_integer('train_examples', 2000, 'training images for the typical −log p')


def main() -> None:
    F = flags.FLAGS
    if not F.workdir:
        raise UserError('--workdir is required')
    results = evaluate_ood(F.workdir, F.background, F.examples, F.k,
                           F.train_examples)
    print(table(results), flush=True)


if __name__ == '__main__':
    run_command(define_flags, main)
