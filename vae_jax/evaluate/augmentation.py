"""Few labels: a classifier trained on N labelled images per class, alone and with generated
examples added.

    python -m vae_jax.evaluate.augmentation --dataset=mnist --out=runs/augment/mnist
    python -m vae_jax.evaluate.augmentation --dataset=fashion_mnist --labels=10,100 --seeds=2 \
        --vae=runs/ood/fashion_mnist --out=runs/augment/fashion_quick

For each N of `--labels` and each seed, N images per class of the training split are the
labelled set (numpy default_rng(seed)); the classifier (`classifier.Net`, the same recipe in
every arm) is trained on

- 'real': the labelled set alone;
- 'cvae': the labelled set plus `--generated` images per class sampled from a conditional VAE
  trained on the labelled set only (no other label is used);
- 'latent_mixup' (with `--vae`, a VAE trained without labels on the whole training split, as
  semi-supervised methods may): the labelled set plus decoded means of z = λ z_a + (1 − λ) z_b,
  z_a and z_b the posterior means of two labelled images of one class, λ ~ U(0, 1), labelled
  with that class;

and scored on the whole test split. Writes augmentation.json and augmentation.png (test
accuracy against N, mean ± std over the seeds) to `--out`.
"""

import functools
import json
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from vae_jax import model_fns, steps
from vae_jax.errors import UserError, run_command
from vae_jax.evaluate import classifier
from vae_jax.workdir import write_atomic

DATASETS = ('mnist', 'fashion_mnist')
ARMS = ('real', 'cvae', 'latent_mixup')


def labelled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` examples of each class, drawn with default_rng(seed)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise UserError(f'class {c} has {len(members)} training examples, fewer than '
                            f'{per_class}')
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def cvae_config(steps_: int):
    """experiments/cvae.py's model (MLP 784-500-500-20, Bernoulli, dynamic binarization),
    trained `steps_` steps of batch 64 with Adam 1e-3."""
    from vae_jax.configs import base_config
    c = base_config()
    c.data.binarize = 'dynamic'
    c.model.hidden, c.model.latents, c.model.conditional = (500, 500), 20, True
    c.optim.learning_rate = 1e-3
    c.batch_size, c.num_steps = 64, steps_
    return c


def train_cvae(key: jax.Array, images: np.ndarray, labels: np.ndarray, num_classes: int,
               num_steps: int):
    """A conditional VAE trained on (images, labels) with the library's train step on one
    device; minibatches drawn with replacement. Returns (fns, params)."""
    config, fns, step = _cvae(images.shape[1:], num_classes, num_steps)
    state = steps.init_train_state(jax.random.fold_in(key, 0), fns, config, images.shape[1:],
                                   num_steps)
    hparams = steps.hyperparams(config)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    train_key = jax.random.fold_in(key, 1)
    for _ in range(num_steps):
        idx = rng.integers(0, len(images), config.batch_size)
        batch = {'image': images[idx], 'label': labels[idx],
                 'index': np.arange(config.batch_size, dtype=np.int32)}
        state, _ = step(state, batch, train_key, hparams)
    return fns, state.params


@functools.lru_cache(maxsize=None)
def _cvae(example_shape: tuple, num_classes: int, num_steps: int) -> tuple:
    """(config, fns, jitted train step) of the CVAE: built once, so that every training of the
    same shapes (each label count and seed) runs one compiled step."""
    config = cvae_config(num_steps)
    fns = model_fns.build(config.model, example_shape, num_classes)
    step = jax.jit(functools.partial(steps.train_step, fns=fns, objective_config=config.objective,
                                     binarize='dynamic', axis_name=None))
    return config, fns, step


def cvae_samples(fns, params, key: jax.Array, per_class: int, num_classes: int) -> tuple:
    """`per_class` decoded means of the prior for each class: (images [n, ...], labels [n])."""
    y = jnp.repeat(jnp.arange(num_classes), per_class)
    z = fns.sample_prior(params, key, len(y))
    return np.asarray(fns.decode_mean(params, z, y)), np.asarray(y)


def latent_mixup(fns, params, key: jax.Array, images: np.ndarray, labels: np.ndarray,
                 per_class: int) -> tuple:
    """`per_class` decoded means of z = λ z_a + (1 − λ) z_b for each class, z_a, z_b posterior
    means of two of its labelled images drawn at random, λ ~ U(0, 1): (images, labels)."""
    means = np.asarray(fns.encode(params, jnp.asarray(images))[0])
    out_z, out_y = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k_c = jax.random.fold_in(key, int(c))
        a, b = (np.asarray(jax.random.choice(jax.random.fold_in(k_c, i), members, (per_class,)))
                for i in (0, 1))
        lam = np.asarray(jax.random.uniform(jax.random.fold_in(k_c, 2), (per_class, 1)))
        out_z.append(lam * means[a] + (1 - lam) * means[b])
        out_y.append(np.full(per_class, c))
    z = jnp.asarray(np.concatenate(out_z))
    return np.asarray(fns.decode_mean(params, z)), np.concatenate(out_y)


def run_experiment(dataset: str, labels_per_class: Sequence[int], seeds: int, *,
                   generated: int = 500, classifier_steps: int = 2000, cvae_steps: int = 2000,
                   vae_workdir: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Every arm at every N and seed: {'results': {arm: {N: [accuracy per seed]}}, ...}."""
    from vae_jax.data.tfds_source import TfdsSource
    if dataset not in DATASETS:
        raise UserError(f'--dataset must be one of {", ".join(DATASETS)}, got {dataset!r}')
    if not labels_per_class or min(labels_per_class) < 1 or seeds < 1 or generated < 1:
        raise UserError('--labels must be positive counts, --seeds and --generated >= 1')
    vae = None
    if vae_workdir:
        from vae_jax.run import load_run
        vae = load_run(vae_workdir)
        if vae.config.data.name != dataset or vae.config.model.conditional:
            raise UserError(f'--vae must be an unconditional VAE of {dataset}; {vae_workdir} '
                            f'is a {"conditional " if vae.config.model.conditional else ""}'
                            f'model of {vae.config.data.name}')
    train_source = TfdsSource(dataset, 'train', data_dir)
    test_source = TfdsSource(dataset, 'test', data_dir)
    train = train_source.get_batch(np.arange(train_source.num_examples))
    test = test_source.get_batch(np.arange(test_source.num_examples))
    classes = train_source.num_classes
    fit = functools.partial(classifier.train, num_classes=classes, steps=classifier_steps)
    score = lambda p: classifier.accuracy(p, test['image'], test['label'], classes)
    arms = [a for a in ARMS if a != 'latent_mixup' or vae is not None]
    results = {arm: {} for arm in arms}
    for n in labels_per_class:
        for seed in range(seeds):
            start = time.perf_counter()
            idx = labelled_subset(train['label'], n, seed)
            x, y = train['image'][idx], train['label'][idx]
            key = jax.random.fold_in(jax.random.key(seed), n)
            clf_key = jax.random.fold_in(key, 0)  # the same classifier init and batches' key
            accuracy = {'real': score(fit(clf_key, x, y))}
            fns, params = train_cvae(jax.random.fold_in(key, 1), x, y, classes, cvae_steps)
            gx, gy = cvae_samples(fns, params, jax.random.fold_in(key, 2), generated, classes)
            accuracy['cvae'] = score(fit(clf_key, np.concatenate([x, gx]),
                                         np.concatenate([y, gy])))
            if vae is not None:
                mx, my = latent_mixup(vae.fns, vae.params, jax.random.fold_in(key, 3), x, y,
                                      generated)
                accuracy['latent_mixup'] = score(fit(clf_key, np.concatenate([x, mx]),
                                                     np.concatenate([y, my])))
            for arm, acc in accuracy.items():
                results[arm].setdefault(str(n), []).append(acc)
            logging.info('%s, %d labels per class, seed %d (%.0f s): %s', dataset, n, seed,
                         time.perf_counter() - start,
                         ', '.join(f'{a} {v:.4f}' for a, v in accuracy.items()))
    return {'dataset': dataset, 'labels_per_class': list(labels_per_class), 'seeds': seeds,
            'generated_per_class': generated, 'classifier_steps': classifier_steps,
            'cvae_steps': cvae_steps, 'vae': vae_workdir, 'test_examples': len(test['label']),
            'results': results}


def table(summary: dict[str, Any]) -> str:
    arms = list(summary['results'])
    lines = ['| labels per class | ' + ' | '.join(arms) + ' |', '|---|' + '---|' * len(arms)]
    for n in summary['labels_per_class']:
        cells = []
        for arm in arms:
            acc = np.asarray(summary['results'][arm][str(n)]) * 100
            cells.append(f'{acc.mean():.2f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.2f}')
        lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5, 3.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ns = summary['labels_per_class']
    for arm, by_n in summary['results'].items():
        acc = [np.asarray(by_n[str(n)]) * 100 for n in ns]
        ax.errorbar(ns, [a.mean() for a in acc],
                    yerr=[a.std(ddof=1) if len(a) > 1 else 0 for a in acc], marker='o',
                    capsize=3, label=arm.replace('_', ' '))
    ax.set_xscale('log')
    ax.set_xlabel('labelled images per class')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title(f"{summary['dataset']}: {summary['seeds']} seeds", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def define_flags() -> None:
    """The command's flags, defined only when it runs (the module stays importable beside
    other commands)."""
    flags.DEFINE_string('dataset', 'mnist', 'mnist or fashion_mnist')
    flags.DEFINE_list('labels', ['10', '100', '1000'], 'labelled images per class')
    flags.DEFINE_integer('seeds', 3, 'labelled sets (and models) per N')
    flags.DEFINE_integer('generated', 500, 'generated images per class')
    flags.DEFINE_integer('classifier_steps', 2000, 'steps of each classifier')
    flags.DEFINE_integer('cvae_steps', 2000, 'steps of each conditional VAE')
    flags.DEFINE_string('vae', None, 'an unconditional VAE run of the dataset (latent mixup)')
    flags.DEFINE_string('out', None, 'where augmentation.json and augmentation.png go')


def main() -> None:
    F = flags.FLAGS
    if not F.out:
        raise UserError('--out is required')
    try:
        labels = [int(n) for n in F.labels]
    except ValueError:
        raise UserError(f'--labels must be whole numbers, got {F.labels}') from None
    summary = run_experiment(F.dataset, labels, F.seeds,
                             generated=F.generated, classifier_steps=F.classifier_steps,
                             cvae_steps=F.cvae_steps, vae_workdir=F.vae)
    out = Path(F.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / 'augmentation.json', json.dumps(summary, indent=2) + '\n')
    plot(summary, out / 'augmentation.png')
    print(table(summary), flush=True)


if __name__ == '__main__':
    run_command(define_flags, main)
