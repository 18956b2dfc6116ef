"""Completing damaged test images with a trained run, against two baselines.

    python -m vae_jax.evaluate.imputation --workdir=runs/paper/flax_vae/seed=0
    python -m vae_jax.evaluate.imputation --workdir=RUN --masks=random:0.8,top --examples=500

For every mask (`impute.parse_mask`: random:P, block:S, top, bottom) the first `examples` test
images, as the model reads them (the fixed binary draw of a dynamically binarized run), lose
their masked pixels and are completed by each method of `METHODS`. The scores (`impute.
imputation_scores`: MSE on the missing pixels and, for binary images, the accuracy of the
imputed probabilities thresholded at 0.5), the seconds each method took, the chains'
acceptance and the importance sampler's bound on log p(x_obs) go to section 'imputation' of
`results/eval_<step>.json` (merged: the other sections stay) and to TensorBoard; a picture per
mask (masked input, each method's completion, the truth) to images/impute_<mask>_<step>.png.

Randomness: masks and samplers draw from fold_in(eval_key, IMPUTE); example i of mask m uses
example key i of fold_in(·, m), so a rerun writes the same numbers.
"""

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from vae_jax import images
from vae_jax.data.registry import train_and_evals
from vae_jax.errors import UserError, run_command
from vae_jax.evaluate import impute
from vae_jax.evaluate.report import as_trained, complete, probe_sample
from vae_jax.keys import EVAL, example_keys, run_keys
from vae_jax.metric_writer import MetricWriter
from vae_jax.results import flat_scalars, write_results
from vae_jax.run import Run, load_run

METHODS = ('importance', 'metropolis_within_gibbs', 'pseudo_gibbs', 'mean', 'nearest_neighbour')
IMPUTE = 7  # fold_in(eval_key, ·): masks and samplers of the imputation
PICTURE_EXAMPLES = 8


@dataclasses.dataclass(frozen=True)
class Settings:
    """examples: test images (0 = all); samples: k of the importance sampler; iterations,
    burn_in: of each chain; reference_examples: training images the baselines read (the
    pixel mean, the nearest neighbours), a fixed uniform sample; batch_size: images at once."""
    examples: int = 1000
    samples: int = 1000
    iterations: int = 300
    burn_in: int = 100
    reference_examples: int = 60_000
    batch_size: int = 250
    warm_start: bool = True

    def check(self) -> None:
        for name in ('samples', 'iterations', 'reference_examples', 'batch_size'):
            if getattr(self, name) < 1:
                raise UserError(f'--{name} must be >= 1, got {getattr(self, name)}')
        if self.examples < 0:
            raise UserError(f'--examples must be >= 0 (0: the whole test split), got '
                            f'{self.examples}')
        if not 0 <= self.burn_in < self.iterations:
            raise UserError(f'--burn_in must be in [0, --iterations), got {self.burn_in} with '
                            f'--iterations={self.iterations}')


def check_choice(masks: Sequence[str], methods: Sequence[str]) -> None:
    """Refuses unknown masks and methods (UserError) before anything is loaded or written."""
    if not masks or not methods:
        raise UserError('--masks and --methods need at least one entry each')
    for spec in masks:
        impute.parse_mask(spec)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f'unknown imputation method(s) {", ".join(unknown)}: choose from '
                        f'{", ".join(METHODS)}')


def _samplers(run: Run, s: Settings) -> dict[str, Any]:
    """method -> jitted (x, mask, y, keys, fill) -> dict with 'imputed' (the parameters are
    an argument of the compiled function, not constants baked into it)."""
    fns = run.fns
    kw = dict(iterations=s.iterations, burn_in=s.burn_in)
    fn = {
        'importance': functools.partial(impute.importance_impute, num_samples=s.samples),
        'metropolis_within_gibbs': functools.partial(impute.metropolis_within_gibbs, **kw),
        'pseudo_gibbs': functools.partial(impute.pseudo_gibbs, **kw),
    }
    return {name: functools.partial(jax.jit(
        lambda p, x, m, y, k, fill, f=f: f(fns, p, x, m, y, k, fill=fill)), run.params)
        for name, f in fn.items()}


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _run_sampler(sampler, x, mask, y, keys, fill, batch_size: int) -> dict[str, np.ndarray]:
    """Every example through `sampler`, batch by batch (the last batch padded, so one compile);
    fill: [n, ...] what the encoder first reads at each example's missing pixels."""
    parts = []
    for sl in _batches(len(x), batch_size):
        pad = batch_size - (sl.stop - sl.start)
        take = lambda a: np.concatenate([a[sl], np.repeat(a[sl][-1:], pad, 0)]) if pad else a[sl]
        out = sampler(take(x), take(mask), None if y is None else take(y),
                      jnp.concatenate([keys[sl], jnp.repeat(keys[sl][-1:], pad)]) if pad
                      else keys[sl], take(fill))
        parts.append({k: np.asarray(v)[:sl.stop - sl.start] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def picture(x, mask, completions: dict[str, np.ndarray]) -> np.ndarray:
    """Rows: the masked input (missing pixels red), each method's completion, the truth."""
    rgb = lambda a: np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a
    masked = np.where(mask > 0, rgb(x), np.array([0.85, 0.15, 0.15], np.float32))
    rows = [masked] + [rgb(c) for c in completions.values()] + [rgb(x)]
    labels = ['masked'] + [name.replace('_', ' ') for name in completions] + ['truth']
    return images.tile_picture(np.stack(rows), row_labels=labels)


def impute_run(workdir: str, masks: Sequence[str], methods: Sequence[str] = METHODS,
               settings: Settings = Settings(), step: int | None = None) -> dict[str, Any]:
    """Runs every method on every mask; returns (and writes) section 'imputation'."""
    check_choice(masks, methods)
    settings.check()
    run = load_run(workdir, step)
    config = run.config
    if len(run.example_shape) != 3:
        raise UserError(f'imputation needs image data; {config.data.name} examples have shape '
                        f'{run.example_shape}')
    gaussian = len(run.fns.groups) == 1 and run.fns.gaussian_posterior
    if 'metropolis_within_gibbs' in methods and not gaussian:
        logging.warning('Metropolis-within-Gibbs skipped: q(z|x) of this model is not one '
                        'diagonal Gaussian')
        methods = [m for m in methods if m != 'metropolis_within_gibbs']
    train_source, evals = train_and_evals(config.data, config.seed)
    eval_key = run_keys(config.seed)[EVAL]
    test = as_trained(run, evals['eval'], eval_key)
    n = min(settings.examples or test.num_examples, test.num_examples)
    batch = test.get_batch(np.arange(n))
    x, y = batch['image'], batch['label'] if config.model.conditional else None
    reference = probe_sample(as_trained(run, complete(train_source), eval_key),
                             settings.reference_examples)
    ref = reference.get_batch(np.arange(reference.num_examples))['image']
    pixel_mean = ref.mean(0)
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    samplers = _samplers(run, settings)
    # A model trained on incomplete images (data.train_missing, missing_iwae) has an encoder
    # that reads 0 at a missing pixel: its proposal is q(z | x with zeros), as in training.
    incomplete = config.data.get('train_missing', 0.0) > 0
    fill_value = np.zeros_like(pixel_mean) if incomplete else pixel_mean
    warm_start = settings.warm_start and not incomplete
    if warm_start and 'pseudo_gibbs' in methods:  # it runs first: the others start from it
        methods = ['pseudo_gibbs'] + [m for m in methods if m != 'pseudo_gibbs']
    key = jax.random.fold_in(eval_key, IMPUTE)
    results: dict[str, Any] = {
        'examples': n, 'reference_examples': len(ref), 'samples': settings.samples,
        'iterations': settings.iterations, 'burn_in': settings.burn_in, 'binary': binary,
        'fill': 'zero' if incomplete else 'training pixel mean', 'warm_start': warm_start,
        'masks': {}}
    pictures = {}
    for m, spec in enumerate(masks):
        keys = example_keys(jax.random.fold_in(key, m), jnp.arange(n))
        mask = np.asarray(impute.make_masks(keys, spec, run.example_shape))
        section, completions = {}, {}
        fill = np.broadcast_to(fill_value, x.shape)
        for method in methods:
            start = time.perf_counter()
            extra = {}
            if method == 'mean':
                imputed = np.asarray(impute.mean_impute(x, mask, pixel_mean))
            elif method == 'nearest_neighbour':
                imputed = impute.nearest_neighbour_impute(x, mask, ref)
            else:
                out = _run_sampler(samplers[method], x, mask, y, keys, fill,
                                   settings.batch_size)
                imputed = out.pop('imputed')
                if method == 'pseudo_gibbs' and warm_start:
                    fill = imputed  # the proposal's input and the chain's start of the others
                extra = {k: float(np.mean(v)) for k, v in out.items()}
            section[method] = dict(impute.imputation_scores(x, imputed, mask, binary), **extra,
                                   seconds=round(time.perf_counter() - start, 2))
            completions[method] = imputed[:PICTURE_EXAMPLES]
            logging.info('%s, %s: %s', spec, method, ', '.join(
                f'{k} {v:.4g}' for k, v in section[method].items()))
        results['masks'][spec] = section
        pictures[spec] = picture(x[:PICTURE_EXAMPLES], mask[:PICTURE_EXAMPLES], completions)
    write_results(run.workdir, run.step, {'imputation': results})
    writer = MetricWriter(run.workdir, start_step=None)
    try:
        tags = {k.replace(':', '_'): v for k, v in flat_scalars(results).items()}  # TB: no ':'
        writer.scalars(run.step, 'impute', tags, jsonl=False)
        for spec, pic in pictures.items():
            writer.image(run.step, f'impute_{spec.replace(":", "")}', pic)
    finally:
        writer.close()
    logging.info('wrote section imputation of %s/results/eval_%07d.json', run.workdir, run.step)
    return results


def table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per mask, one column per method (accuracy, else MSE)."""
    key = 'accuracy' if results['binary'] else 'mse'
    methods = list(next(iter(results['masks'].values())))
    lines = [f'| mask ({key} on the missing pixels) | ' + ' | '.join(methods) + ' |',
             '|---|' + '---|' * len(methods)]
    for spec, section in results['masks'].items():
        lines.append(f'| {spec} | ' + ' | '.join(f'{section[m][key]:.4f}' for m in methods) + ' |')
    return '\n'.join(lines)


def define_flags() -> None:
    """The command's flags, defined only when it runs (the module stays importable beside
    other commands)."""
    flags.DEFINE_string('workdir', None, 'the run to evaluate')
    flags.DEFINE_list('masks', ['random:0.5', 'random:0.8', 'block:14', 'top', 'bottom'],
                      'masks: random:P (each pixel missing with probability P), block:S '
                      '(a centred S×S square), top, bottom (that half)')
    flags.DEFINE_list('methods', list(METHODS), 'imputation methods')
    flags.DEFINE_integer('step', None, 'checkpoint step (default: the newest readable one)')
    flags.DEFINE_integer('examples', 1000, 'test images (0: all)')
    flags.DEFINE_integer('samples', 1000, 'importance samples per image')
    flags.DEFINE_integer('iterations', 300, 'iterations of each chain')
    flags.DEFINE_integer('burn_in', 100, 'iterations before a chain is averaged')
    flags.DEFINE_integer('reference_examples', 60_000,
                         'training images the baselines read')
    flags.DEFINE_integer('batch_size', 250, 'images imputed at once')
    flags.DEFINE_bool('warm_start', True, 'start the chains, and feed the importance sampler\'s '
                      'encoder, from the pseudo-Gibbs completion')


def main() -> None:
    F = flags.FLAGS
    if not F.workdir:
        raise UserError('--workdir is required')
    settings = Settings(F.examples, F.samples, F.iterations, F.burn_in,
                        F.reference_examples, F.batch_size, F.warm_start)
    results = impute_run(F.workdir, F.masks, F.methods, settings, F.step)
    print(table(results), flush=True)


if __name__ == '__main__':
    run_command(define_flags, main)
