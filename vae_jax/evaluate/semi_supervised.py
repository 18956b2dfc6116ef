"""Semi-supervised classification with Kingma et al. 2014's M2 model, and M1+M2.

    python -m vae_jax.evaluate.semi_supervised --labels=100 --out=runs/ssl/m2
    python -m vae_jax.evaluate.semi_supervised --labels=100 --m1=runs/ood/mnist --out=runs/ssl/m1m2

M2: p(y) uniform over K classes, p(z) = N(0, I), p(x | y, z) (a conditional decoder);
q(z | x, y) (a conditional encoder) and q(y | x) (a classifier). Per example (nats):

    L(x, y) = −log p(x | y, z) + KL(q(z | x, y) || p(z)) + log K            (labelled, eq. 6)
    U(x)    = Σ_y q(y | x) L(x, y) − H(q(y | x))                            (unlabelled, eq. 7)
    J       = mean_labelled L + mean_unlabelled U + α · mean_labelled −log q(y | x)   (eq. 9)

with z one reparameterized sample per (x, y). The conditional encoder/decoder are vae_jax's
CVAE networks (`model_fns`), the classifier an MLP. M1+M2 trains M2 on the posterior means of
an unsupervised VAE (M1, a finished run) with a Gaussian likelihood of learned scale.
Each step reads a batch of labelled examples (drawn with replacement from the N labelled ones)
and a batch of the whole training split without its labels. The test error is that of
arg-max q(y | x) on the test split.
"""

import functools
import json
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags, logging

from vae_jax import keys as keys_lib, model_fns
from vae_jax.errors import UserError, run_command
from vae_jax.evaluate.augmentation import labelled_subset
from vae_jax.workdir import write_atomic


class Classifier(nn.Module):
    """q(y | x): MLP with softplus hidden layers -> logits [b, K]."""
    hidden: tuple
    num_classes: int

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            h = nn.softplus(nn.Dense(width)(h))
        return nn.Dense(self.num_classes)(h)


def model_config(latents: int = 50, hidden: int = 500, likelihood: str = 'bernoulli'):
    """The base config's model section as a CVAE MLP with softplus units."""
    from vae_jax.configs import base_config
    c = base_config().model
    c.hidden, c.latents, c.conditional, c.likelihood = (hidden,), latents, True, likelihood
    c.activation = 'softplus'
    return c


def labelled_loss(params, x, y, keys, *, fns, num_classes: int) -> jax.Array:
    """L(x, y) of each example: x [b, ...], y [b] int, keys [b] -> [b] nats."""
    out, lat = fns.infer(params, fns.features(params, x, y), y, keys)
    return -fns.log_lik(x, out) + jnp.sum(lat.kl, axis=-1) + jnp.log(num_classes)


def unlabelled_loss(params, logits, x, keys, *, fns, num_classes: int) -> jax.Array:
    """U(x) of each example from the classifier's logits [b, K]: [b] nats. Class k's sample
    uses fold_in(key, k)."""
    per_class = jax.vmap(lambda k: labelled_loss(
        params, x, jnp.full(x.shape[0], k), jax.vmap(jax.random.fold_in, (0, None))(keys, k),
        fns=fns, num_classes=num_classes))(jnp.arange(num_classes))  # [K, b]
    q = jax.nn.softmax(logits)
    entropy = -jnp.sum(q * jax.nn.log_softmax(logits), axis=-1)
    return jnp.sum(q * per_class.T, axis=-1) - entropy


def m2_loss(params, labelled, unlabelled, keys, *, fns, classifier, num_classes: int,
            alpha: float):
    """J of one step: labelled {'x' [b, ...], 'y' [b]}, unlabelled {'x' [b', ...]}, keys
    (labelled [b], unlabelled [b']). Returns (J [], metrics)."""
    vae, clf = params['vae'], params['classifier']
    k_l, k_u = keys
    l_term = labelled_loss(vae, labelled['x'], labelled['y'], k_l, fns=fns,
                           num_classes=num_classes)
    logits_l = classifier.apply({'params': clf}, labelled['x'])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_l, labelled['y'])
    u_term = unlabelled_loss(vae, classifier.apply({'params': clf}, unlabelled['x']),
                             unlabelled['x'], k_u, fns=fns, num_classes=num_classes)
    loss = jnp.mean(l_term) + jnp.mean(u_term) + alpha * jnp.mean(ce)
    return loss, {'loss': loss, 'labelled': jnp.mean(l_term), 'unlabelled': jnp.mean(u_term),
                  'cross_entropy': jnp.mean(ce)}


def train_m2(key, labelled_x, labelled_y, unlabelled_x, *, num_classes: int, steps: int,
             batch_size: int = 100, learning_rate: float = 3e-4, alpha: float | None = None,
             likelihood: str = 'bernoulli', binarize: bool = True, latents: int = 50,
             hidden: int = 500):
    """Trains M2; returns (fns, classifier, params, alpha). α defaults to 0.1 × (unlabelled /
    labelled examples), Kingma et al.'s 0.1·N with per-batch means. Binary models read a fresh
    Bernoulli draw of the images at every step (dynamic binarization)."""
    alpha = 0.1 * len(unlabelled_x) / len(labelled_x) if alpha is None else alpha
    shape = labelled_x.shape[1:]
    fns = model_fns.build(model_config(latents, hidden, likelihood), shape, num_classes)
    classifier = Classifier((hidden,), num_classes)
    k_vae, k_clf, k_data = jax.random.split(key, 3)
    x0 = jnp.zeros((1, *shape))
    def init(vae_key, classifier_key):  # one program, the eager init's values
        return {'vae': fns.module.init(vae_key, x0, jnp.zeros((1,), jnp.int32))['params'],
                'classifier': classifier.init(classifier_key, x0)['params']}
    params = jax.jit(init)(k_vae, k_clf)
    opt = optax.adam(learning_rate)
    loss_fn = functools.partial(m2_loss, fns=fns, classifier=classifier,
                                num_classes=num_classes, alpha=alpha)

    @jax.jit
    def step(params, opt_state, i, lx, ly, ux):
        k = jax.random.fold_in(k_data, i)
        k_l = keys_lib.example_keys(jax.random.fold_in(k, 0), jnp.arange(batch_size))
        k_u = keys_lib.example_keys(jax.random.fold_in(k, 1), jnp.arange(batch_size))
        i_l = jax.random.randint(jax.random.fold_in(k, 2), (batch_size,), 0, lx.shape[0])
        i_u = jax.random.randint(jax.random.fold_in(k, 3), (batch_size,), 0, ux.shape[0])
        xl, xu = lx[i_l], ux[i_u]
        if binarize:
            xl, xu = keys_lib.binarize(k_l, xl), keys_lib.binarize(k_u, xu)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, {'x': xl, 'y': ly[i_l]}, {'x': xu}, (k_l, k_u))
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    opt_state = opt.init(params)
    data = [jnp.asarray(a) for a in (labelled_x, labelled_y, unlabelled_x)]
    for i in range(steps):
        params, opt_state, metrics = step(params, opt_state, i, *data)
        if (i + 1) % max(steps // 10, 1) == 0:
            logging.info('M2 step %d/%d: %s', i + 1, steps,
                         ', '.join(f'{k} {float(v):.3f}' for k, v in metrics.items()))
    return fns, classifier, params, alpha


def test_error(classifier, params, x, y, batch_size: int = 1000) -> float:
    """Fraction of (x, y) that arg-max q(y | x) gets wrong."""
    apply = jax.jit(lambda p, x: jnp.argmax(classifier.apply({'params': p}, x), -1))
    wrong = sum(int(np.sum(np.asarray(apply(params['classifier'], x[s:s + batch_size]))
                           != y[s:s + batch_size])) for s in range(0, len(x), batch_size))
    return wrong / len(x)


def m1_features(workdir: str, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The posterior means [n, z] of a finished unsupervised run (M1) for images [n, ...]."""
    from vae_jax.run import load_run
    run = load_run(workdir)
    if run.config.model.conditional:
        raise UserError(f'--m1 must be an unsupervised VAE; {workdir} is conditional')
    return np.concatenate([np.asarray(run.encode(images[s:s + batch_size])[0])
                           for s in range(0, len(images), batch_size)])


def run_experiment(labels: int, seeds: int, steps: int, m1: str | None = None,
                   data_dir: str | None = None) -> dict[str, Any]:
    """M2 (or M1+M2 with `m1`) on MNIST with `labels` labels (labels / 10 per class)."""
    from vae_jax.data.tfds_source import TfdsSource
    if labels < 10 or labels % 10 or seeds < 1 or steps < 1:
        raise UserError('--labels must be a positive multiple of 10 (the same number per '
                        'class), --seeds and --steps >= 1')
    train = TfdsSource('mnist', 'train', data_dir)
    test = TfdsSource('mnist', 'test', data_dir)
    tr, te = (s.get_batch(np.arange(s.num_examples)) for s in (train, test))
    x_train, x_test = tr['image'], te['image']
    kw = {}
    if m1:
        x_train, x_test = m1_features(m1, x_train), m1_features(m1, x_test)
        kw = dict(likelihood='gaussian_learned', binarize=False)
    errors, seconds = [], []
    for seed in range(seeds):
        start = time.perf_counter()
        idx = labelled_subset(tr['label'], labels // 10, seed)
        _, classifier, params, alpha = train_m2(
            jax.random.key(seed), x_train[idx], tr['label'][idx], x_train, num_classes=10,
            steps=steps, **kw)
        errors.append(test_error(classifier, params, x_test, te['label']))
        seconds.append(time.perf_counter() - start)
        logging.info('seed %d: test error %.2f %% (%.0f s)', seed, 100 * errors[-1], seconds[-1])
    return {'model': 'M1+M2' if m1 else 'M2', 'm1': m1, 'labels': labels, 'seeds': seeds,
            'steps': steps, 'alpha': alpha, 'test_error': errors,
            'test_error_mean': float(np.mean(errors)),
            'test_error_std': float(np.std(errors, ddof=1)) if seeds > 1 else 0.0,
            'seconds_per_seed': float(np.mean(seconds)),
            'published': {'M2': (11.97, 1.71), 'M1+M2': (3.33, 0.14)}['M1+M2' if m1 else 'M2']}


def define_flags() -> None:
    """The command's flags, defined only when it runs (the module stays importable beside
    other commands)."""
    flags.DEFINE_integer('labels', 100, 'labelled training images (a tenth per class)')
    flags.DEFINE_integer('seeds', 1, 'labelled sets and models')
    flags.DEFINE_integer('steps', 20_000, 'optimizer steps')
    flags.DEFINE_string('m1', None, 'an unsupervised VAE run of MNIST: train M1+M2 on its '
                        'posterior means')
    flags.DEFINE_string('out', None, 'where semi_supervised.json goes')


def main() -> None:
    F = flags.FLAGS
    if not F.out:
        raise UserError('--out is required')
    summary = run_experiment(F.labels, F.seeds, F.steps, F.m1)
    out = Path(F.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / 'semi_supervised.json', json.dumps(summary, indent=2) + '\n')
    pub = summary['published']
    print(f"{summary['model']}, {summary['labels']} labels, {summary['steps']} steps: test error "
      f"{100 * summary['test_error_mean']:.2f} % ± {100 * summary['test_error_std']:.2f} "
      f"({summary['seeds']} seeds); Kingma et al. 2014: {pub[0]} % ± {pub[1]}", flush=True)


if __name__ == '__main__':
    run_command(define_flags, main)
