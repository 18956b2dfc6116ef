"""A small classifier of images: features for the sample-quality scores,
and the classifier of the few-label experiments.

    params = train(key, images, labels, num_classes=10, steps=1500)
    logits = apply(params, x)              # [b, classes]
    feats = features(params, x)            # [b, 128]: the last hidden layer

`feature_extractor(data_config)` trains one per dataset representation once and caches it
(`CACHE_VERSION`): the Fréchet distance and precision/recall of every run read the same
features, and no process repeats the training.
"""

import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import serialization

from vae_jax.cache import cache_dir
from vae_jax.workdir import write_atomic

FEATURES = 128
# Bump when the architecture, the recipe or the data of the cached classifiers change: a cache
# entry of another version is never read.
CACHE_VERSION = 1
RECIPE = dict(steps=3000, batch_size=128, learning_rate=1e-3, seed=0)
# Datasets without labels, and the labelled dataset their images come from: Larochelle's
# binarized MNIST is a Bernoulli draw of MNIST's images.
LABELLED = {'binarized_mnist': 'mnist'}
BINARY = ('binarized_mnist',)


class Net(nn.Module):
    """dense 512 - dense 128 (the features) - dense classes, ReLU. An MLP rather than a convnet:
    XLA:CPU's convolution gradients are slow, and the MLP trains in seconds on a CPU. Its test
    accuracy is recorded beside the cached parameters (97.44 % on binarized MNIST)."""
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, with_features: bool = False):
        h = nn.relu(nn.Dense(512)(x.reshape(x.shape[0], -1)))
        h = nn.relu(nn.Dense(FEATURES)(h))
        logits = nn.Dense(self.num_classes)(h)
        return (logits, h) if with_features else logits


@functools.partial(jax.jit, static_argnames='num_classes')
def apply(params, x: jax.Array, num_classes: int = 10) -> jax.Array:
    """x [b, h, w, c] in [0, 1] -> logits [b, classes]."""
    return Net(num_classes).apply({'params': params}, x)


@functools.partial(jax.jit, static_argnames='num_classes')
def features(params, x: jax.Array, num_classes: int = 10) -> jax.Array:
    """x [b, h, w, c] -> the last hidden layer [b, FEATURES] (the sample-quality features)."""
    return Net(num_classes).apply({'params': params}, x, with_features=True)[1]


def train(key: jax.Array, images: np.ndarray, labels: np.ndarray, *, num_classes: int,
          steps: int, batch_size: int = 128, learning_rate: float = 1e-3,
          weight_decay: float = 0.0) -> Any:
    """Adam(W) on the cross-entropy of minibatches drawn with replacement from fold_in(key, step).

    Args:
      images: [n, h, w, c] float in [0, 1]; labels: [n] int.
      steps, batch_size, learning_rate, weight_decay: the recipe.

    Returns:
      The parameters.
    """
    init_key, data_key = jax.random.split(key)
    params = jax.jit(Net(num_classes).init)(init_key, jnp.zeros((1, *images.shape[1:])))['params']
    return _fit(params, data_key, jnp.asarray(images, jnp.float32),
                jnp.asarray(labels, jnp.int32), num_classes=num_classes, steps=steps,
                batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay)


# The key and the data are arguments, not constants folded into the program: one compilation
# serves every fit of the same shapes and recipe (the few-label experiment fits one per label
# count, seed and arm).
@functools.partial(jax.jit, static_argnames=('num_classes', 'steps', 'batch_size',
                                             'learning_rate', 'weight_decay'))
def _fit(params, data_key: jax.Array, images: jax.Array, labels: jax.Array, *, num_classes: int,
         steps: int, batch_size: int, learning_rate: float, weight_decay: float) -> Any:
    """`steps` Adam(W) steps from `params` (see `train`), in one `lax.scan`."""
    model = Net(num_classes)
    opt = optax.adamw(learning_rate, weight_decay=weight_decay)

    def step(carry, i):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(data_key, i), (batch_size,), 0,
                                 images.shape[0])

        def loss(p):
            logits = model.apply({'params': p}, images[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()
        updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))[0][0]


def accuracy(params, images: np.ndarray, labels: np.ndarray, num_classes: int = 10,
             batch_size: int = 1000) -> float:
    """Fraction of `images` [n, ...] whose arg-max class is `labels` [n]."""
    hits = sum(int(np.sum(np.argmax(apply(params, images[i:i + batch_size], num_classes), -1)
                          == labels[i:i + batch_size]))
               for i in range(0, len(images), batch_size))
    return hits / len(images)


# -- the cached feature extractor of a dataset --------------------------------------------------
def binary_images(data_config) -> bool:
    """Whether a model of `data_config` produces binary images (and is scored on binary ones)."""
    return data_config.name in BINARY or data_config.binarize == 'dynamic'


def data_sources(data_config):
    """(train, test) labelled sources of the images a model of `data_config` produces, the
    same for every run and seed: binary images (binarized MNIST, or dynamic binarization) are
    the fixed Bernoulli draw with key 0 of the labelled dataset's images."""
    from vae_jax.data.subsets import BinarizedSource
    from vae_jax.data.tfds_source import TfdsSource
    name = LABELLED.get(data_config.name, data_config.name)
    data_dir = data_config.data_dir or None
    train, test = (TfdsSource(name, split, data_dir) for split in ('train', 'test'))
    if binary_images(data_config):
        key = jax.random.key(0)
        train, test = BinarizedSource(train, key), BinarizedSource(test, key)
    return train, test


def cache_name(data_config) -> str:
    name = LABELLED.get(data_config.name, data_config.name)
    return f'classifier-{name}{"-binary" if binary_images(data_config) else ""}-v{CACHE_VERSION}'


def feature_extractor(data_config) -> tuple[Any, dict]:
    """The cached classifier of `data_config`'s dataset: (params, info). Trained on the whole
    train split with `RECIPE` and written atomically (temp + rename: processes that race write
    the same bytes) the first time; `info` holds its test accuracy, recipe and version."""
    path = cache_dir() / f'{cache_name(data_config)}.msgpack'
    info_path = path.with_suffix('.json')
    train_source, test_source = data_sources(data_config)
    template = jax.eval_shape(Net(train_source.num_classes).init, jax.random.key(0),  # shapes
                              jnp.zeros((1, *train_source.example_shape)))['params']
    if path.is_file() and info_path.is_file():
        try:
            return (serialization.from_bytes(template, path.read_bytes()),
                    json.loads(info_path.read_text()))
        except (ValueError, KeyError, TypeError) as e:  # a damaged entry is retrained
            logging.warning('classifier cache %s unreadable (%s): retraining', path, e)
    train_batch = train_source.get_batch(np.arange(train_source.num_examples))
    test_batch = test_source.get_batch(np.arange(test_source.num_examples))
    logging.info('training the feature classifier %s (%d images, %d steps), cached in %s',
                 path.stem, train_source.num_examples, RECIPE['steps'], path.parent)
    params = train(jax.random.key(RECIPE['seed']), train_batch['image'], train_batch['label'],
                   num_classes=train_source.num_classes, steps=RECIPE['steps'],
                   batch_size=RECIPE['batch_size'], learning_rate=RECIPE['learning_rate'])
    info = dict(version=CACHE_VERSION, dataset=LABELLED.get(data_config.name, data_config.name),
                binary=binary_images(data_config),
                recipe=RECIPE, features=FEATURES,
                test_accuracy=accuracy(params, test_batch['image'], test_batch['label'],
                                       train_source.num_classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}')
    tmp.write_bytes(serialization.to_bytes(params))
    os.replace(tmp, path)
    write_atomic(info_path, json.dumps(info, indent=2) + '\n')
    logging.info('feature classifier: test accuracy %.4f', info['test_accuracy'])
    return params, info
