"""Every purpose a random key (or numpy seed) serves, named in one place.

A run's randomness is a function of `config.seed` alone:

    seed_key = key(seed)
    ├── fold_in(seed_key, INIT)       parameters; fold_in(·, DISCRIMINATOR): FactorVAE's critic
    ├── fold_in(seed_key, TRAIN)      train_key
    │     ├── fold_in(train_key, step)                     step_key
    │     │     └── fold_in(step_key, i)                   example i of the global batch
    │     │           ├── itself: the reparameterization noise (IWAE sample 0)
    │     │           ├── fold_in(·, BINARIZE): dynamic binarization
    │     │           └── fold_in(·, j + 1): IWAE sample j >= 1
    │     └── fold_in(fold_in(train_key, PERMUTATION), step): FactorVAE's permutations
    ├── fold_in(seed_key, EVAL)       eval_key: example i of a split uses fold_in(eval_key, i)
    └── fold_in(seed_key, SAMPLE)     prior samples in pictures

Fixed numpy seeds, the same for every run: DSPRITES_HOLDOUT (the held-out combinations),
PROBE (the linear probe's training sample), MISSING_PIXELS (the pixels a training image lacks
with data.train_missing) and PERTURBED_PIXELS (the noise of data.train_perturb).

Numbers drawn from an example key depend on its global index only, so 1, 2 or 8 devices sharing
a global batch draw the same numbers, and a resumed run redraws exactly what it would have.
The values below are part of every result ever written: changing one changes them all.
"""

import jax
import jax.numpy as jnp
import numpy as np

# fold_in(seed_key, ·)
INIT, TRAIN, EVAL, SAMPLE = 0, 1, 2, 3
# fold_in(init_key, ·): FactorVAE's discriminator parameters.
DISCRIMINATOR = 1
# fold_in(example_key, ·): Bernoulli draws of dynamic binarization. IWAE sample j >= 1 uses
# fold_in(example_key, j + 1), which skips this value.
BINARIZE = 1
# fold_in(train_key, ·): FactorVAE's permutation keys, disjoint from the step keys
# fold_in(train_key, step) for any step a run can reach.
PERMUTATION = 2**32 - 1
# numpy seed of the fixed set of dSprites factor combinations held out for evaluation: the
# same for every run and seed.
DSPRITES_HOLDOUT = 2**31 - 1


# numpy seed of the fixed sample of training examples the linear probe is fitted on.
PROBE = 2**31 - 2

# numpy seed of the missing pixels of training example i (`data.train_missing`):
# default_rng([MISSING_PIXELS, i]), the same pattern for every run, seed and epoch.
MISSING_PIXELS = 2**31 - 3
# numpy seed of the noise of training example i with data.train_perturb (a likelihood-ratio
# background model): default_rng([PERTURBED_PIXELS, i]).
PERTURBED_PIXELS = 2**31 - 4


def run_keys(seed: int) -> dict[int, jax.Array]:
    """{INIT, TRAIN, EVAL, SAMPLE: key} of a run with `config.seed` = `seed`."""
    base = jax.random.key(seed)
    return {i: jax.random.fold_in(base, i) for i in (INIT, TRAIN, EVAL, SAMPLE)}


def example_keys(step_key: jax.Array, index: jax.Array) -> jax.Array:
    """One key per example from its global index: index [b] int -> keys [b]."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, index)


def binarize_keys(keys: jax.Array) -> jax.Array:
    """The dynamic-binarization key of each example key: [b] -> [b]."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, BINARIZE)


def binarize(keys: jax.Array, images: jax.Array) -> jax.Array:
    """Dynamic binarization: pixels ~ Bernoulli(intensity), drawn with each example's
    `binarize_keys`. keys [b], images [b, ...] in [0, 1] -> [b, ...] in {0, 1}. The training
    and eval steps and `data.subsets.BinarizedSource` all draw through it, so they agree."""
    return jax.vmap(lambda k, p: jax.random.bernoulli(k, p).astype(p.dtype))(
        binarize_keys(keys), images)


def iwae_sample_key(key: jax.Array, j: jax.Array) -> jax.Array:
    """Key of posterior sample j of one example, from that example's key.

    Sample 0 is the example key itself, so it is exactly the z that the single-sample ELBO
    draws; sample j >= 1 is fold_in(key, j + 1), skipping BINARIZE. A sample's noise depends
    only on (example key, j): not on k, chunks or batches.
    """
    return jnp.where(j == 0, key, jax.random.fold_in(key, j + 1))


def permutation_key(train_key: jax.Array, step: jax.Array) -> jax.Array:
    """FactorVAE's permutation key of `step`."""
    return jax.random.fold_in(jax.random.fold_in(train_key, PERMUTATION), step)


def dsprites_holdout_rng() -> np.random.Generator:
    """The generator that picks the held-out dSprites combinations (fixed for every run)."""
    return np.random.default_rng([0, DSPRITES_HOLDOUT])

