"""How a trained encoder uses its latent space: active units, per-dimension KL, summary stats.

Everything here takes the posterior parameters of a whole dataset, `mean: [n, z]` and
`logvar: [n, z]` (one row per example, as `collect_posteriors` returns them), and reduces over
the data axis. `active_units` and `kl_per_dim` are pure jnp and jit; `posterior_stats` turns
them into plain floats and lists for a results JSON.
"""

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.data import pipeline
from vae_jax.distributions import gaussian_kl_per_dim

# Burda et al. (2015, "Importance Weighted Autoencoders"): a unit is active when the variance
# over the data of its posterior mean exceeds 1e-2.
ACTIVE_THRESHOLD = 0.01


def active_units(mean: jax.Array, threshold: float = ACTIVE_THRESHOLD):
    """Counts the latent dimensions whose posterior mean varies with the input.

    A_i = Cov_x(E_q(z|x)[z_i]) over the data (population variance, ddof=0); unit i is active
    when A_i > threshold (strictly). A dead unit has q(z_i|x) ~= p(z_i) for every x, so it
    carries no information about x, however small its KL looks on average.

    Args:
      mean: [n, z] posterior means of n examples.
      threshold: the activity threshold; 0.01 as in Burda et al.

    Returns:
      (count: [] int32, variances: [z] the A_i).
    """
    variances = jnp.var(mean, axis=0)
    return jnp.sum(variances > threshold).astype(jnp.int32), variances


def kl_per_dim(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(q(z_i|x) || N(0, 1)) for each latent dimension, averaged over the data.

    Its sum is the mean analytic KL term of the ELBO; the split shows which dimensions pay
    for the information they carry (a collapsed dimension costs ~0 nats).

    Args:
      mean, logvar: [n, z].

    Returns:
      [z] nats per example.
    """
    return jnp.mean(jax.vmap(gaussian_kl_per_dim)(mean, logvar), axis=0)


def posterior_stats(mean, logvar, threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
    """A JSON-ready summary of the posteriors of a dataset.

    Args:
      mean, logvar: [n, z] posterior parameters.
      threshold: the active-unit threshold.

    Returns:
      A dict of Python ints, floats and length-z lists of floats:
        num_examples, latents, active_units, active_threshold;
        var_of_means [z]: the active-unit statistic Var_x(E[z_i|x]);
        mean_of_means [z], std_of_means [z]: where and how widely the posterior means spread;
        mean_posterior_var [z]: E_x[exp(logvar_i)];
        aggregate_var [z]: var_of_means + mean_posterior_var, the variance of the aggregate
          posterior q(z) = E_x q(z|x) by the law of total variance; ~1 where q(z) matches
          the N(0, 1) prior in scale (Hoffman & Johnson 2016, "ELBO surgery");
        kl_per_dim [z], kl_total: nats per example; kl_total is the sum over dimensions. These
          are KL(q(z_i|x) || N(0, 1)) of the Gaussian (mean, logvar), whatever the model's
          prior: which dimensions carry information. The model's own KL per group is
          `group_stats`'.
    """
    mean, logvar = jnp.asarray(mean), jnp.asarray(logvar)
    count, var_of_means = active_units(mean, threshold)
    mean_posterior_var = jnp.mean(jnp.exp(logvar), axis=0)
    kl = kl_per_dim(mean, logvar)

    def to_list(x):
        return [float(v) for v in np.asarray(x)]

    return {
        'num_examples': int(mean.shape[0]),
        'latents': int(mean.shape[1]),
        'active_units': int(count),
        'active_threshold': float(threshold),
        'var_of_means': to_list(var_of_means),
        'mean_of_means': to_list(jnp.mean(mean, axis=0)),
        'std_of_means': to_list(jnp.sqrt(var_of_means)),
        'mean_posterior_var': to_list(mean_posterior_var),
        'aggregate_var': to_list(var_of_means + mean_posterior_var),
        'kl_per_dim': to_list(kl),
        'kl_total': float(jnp.sum(kl)),
    }


def group_stats(mean, kl_groups: Sequence[float], groups: Sequence[int],
                threshold: float = ACTIVE_THRESHOLD) -> list[dict[str, Any]]:
    """Per latent group: its size, its KL term, its share of the total KL and its active units.

    The diagnosis of posterior collapse in a hierarchy: a group with ~0 KL and no active unit
    carries no information about x.

    Args:
      mean: [n, Z] posterior means (`ModelFns.encode`), groups concatenated in order.
      kl_groups: [G] the model's KL term of each group, nats per example (analytic where the
        model has a closed form, else the Monte-Carlo log q - log p; `evaluate_likelihood`).
      groups: [G] group sizes.

    Returns:
      A list of G dicts: latents, kl, kl_fraction, active_units.
    """
    total = float(sum(kl_groups))
    out, start = [], 0
    for size, kl in zip(groups, kl_groups):
        count, _ = active_units(jnp.asarray(mean)[:, start:start + size], threshold)
        out.append({'latents': int(size), 'kl': float(kl),
                    'kl_fraction': float(kl) / total if total else float('nan'),
                    'active_units': int(count)})
        start += size
    return out


def map_source(fn: Callable, source, *, batch_size: int = 500, max_examples: int | None = None):
    """Applies `fn(x, y)` to a `Source` in order, batch by batch, dropping the padding.

    Every call sees a full batch (the last one is padded by `pipeline.eval_batches`), so a
    jitted `fn` compiles once. One host, one device: `fn` does its own device placement.

    Args:
      fn: x [b, *example_shape] float32, y [b] int32 -> a pytree of arrays with leading dim b.
      source: a `Source`; images are passed as they are (in [0, 1] for image datasets).
      batch_size: b.
      max_examples: use the first this many examples; None means all.

    Returns:
      (outputs: the pytree with leading dim n, as numpy; labels: int32 [n]), n the number of
      examples read, in dataset order.
    """
    outputs, labels = [], []
    for batch in pipeline.eval_batches(source, global_batch=batch_size, local_device_count=1,
                                       max_examples=max_examples):
        real = batch['mask'][0] > 0
        out = fn(batch['image'][0], batch['label'][0])
        outputs.append(jax.tree.map(lambda a: np.asarray(a)[real], out))
        labels.append(batch['label'][0][real])
    return jax.tree.map(lambda *a: np.concatenate(a), *outputs), np.concatenate(labels)


def collect_posteriors(encode: Callable, source, *, batch_size: int = 500,
                       max_examples: int | None = None) -> dict[str, np.ndarray]:
    """Posterior parameters of every example of `source`.

    Args:
      encode: x [b, *example_shape], y [b] -> (mean [b, z], logvar [b, z]); e.g.
        `jax.jit(lambda x, y: model.apply({'params': p}, x, y, method=model.encode))`.
        Wrap it to binarize x if the model was trained on binarized inputs.
      source, batch_size, max_examples: as in `map_source`.

    Returns:
      {'mean': float32 [n, z], 'logvar': float32 [n, z], 'label': int32 [n]}.
    """
    (mean, logvar), labels = map_source(encode, source, batch_size=batch_size,
                                        max_examples=max_examples)
    return {'mean': mean.astype(np.float32), 'logvar': logvar.astype(np.float32),
            'label': labels}
