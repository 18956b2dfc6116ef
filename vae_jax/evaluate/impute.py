"""Missing-data imputation with a trained VAE: masks, three samplers, two baselines, scores.

A mask is 1 where a pixel is observed and 0 where it is missing. Every imputer returns its
estimate of E[x_mis | x_obs] for the whole image (observed pixels copied from x), batched
over a leading axis b, with one PRNG key per example (an example's result is a function of its
key alone, as everywhere in vae_jax):

- `importance_impute`: self-normalised importance sampling with the IWAE bound's weights
  w_j = p(x_obs | z_j) p(z_j) / q(z_j | x̃), z_j ~ q(z | x̃), x̃ = x with its missing pixels
  filled (Mattei & Frellsen 2019, §3: E[x_mis | x_obs] ≈ Σ_j w̄_j E[x_mis | z_j]). Exact as
  k → ∞ for any proposal, so it serves every model family (flows and hierarchies too); it
  also returns the k-sample bound on log p(x_obs) and the effective sample size.
- `pseudo_gibbs`: Rezende et al. 2014, §5: alternate z ~ q(z | x̂) and x̂_mis ~ p(x_mis | z).
  Exact only when q is the true posterior.
- `metropolis_within_gibbs`: Mattei & Frellsen 2018: the same chain with q(z | x̂) as an
  independence proposal accepted with the Metropolis–Hastings ratio of p(x̂, z), so its
  stationary law is the model's p(z, x_mis | x_obs) whatever q is. Needs q's density at the
  current z: one Gaussian latent group, no flow.

The chains report the Rao–Blackwellised mean, the average of E[x_mis | z_t] over the
iterations after `burn_in`. `mean_impute` and `nearest_neighbour_impute` are the baselines.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions as D, likelihoods
from vae_jax.errors import UserError
from vae_jax.keys import iwae_sample_key
from vae_jax.model_fns import ModelFns

MASK_KINDS = ('random', 'block', 'top', 'bottom')


# -- masks ------------------------------------------------------------------------------------
def parse_mask(spec: str) -> tuple[str, float]:
    """'random:0.8' (each pixel missing with probability 0.8), 'block:14' (a centred 14×14
    square missing), 'top' or 'bottom' (that half missing) -> (kind, parameter)."""
    kind, _, value = spec.strip().partition(':')
    if kind not in MASK_KINDS:
        raise UserError(f'unknown mask {spec!r}: use random:P, block:S, top or bottom')
    if kind in ('top', 'bottom'):
        if value:
            raise UserError(f'mask {kind!r} takes no parameter, got {spec!r}')
        return kind, 0.0
    try:
        number = float(value)
    except ValueError:
        raise UserError(f'mask {spec!r} needs a number: random:P (0 < P < 1) or block:S '
                        '(pixels)') from None
    if kind == 'random' and not 0 < number < 1:
        raise UserError(f'random:P needs 0 < P < 1, got {spec!r}')
    if kind == 'block' and (number < 1 or number != int(number)):
        raise UserError(f'block:S needs a whole number of pixels S >= 1, got {spec!r}')
    return kind, number


def make_masks(keys: jax.Array, spec: str, example_shape: tuple) -> jax.Array:
    """Masks of images [h, w, c] (1 = observed): keys [b] -> [b, h, w, c] float32.

    'random:P' draws each pixel's mask from its example's key (all channels of a pixel
    together); the others are the same for every example.
    """
    kind, value = parse_mask(spec)
    h, w = example_shape[:2]
    b = keys.shape[0]
    if kind == 'random':
        observed = jax.vmap(lambda k: jax.random.bernoulli(k, 1 - value, (h, w)))(keys)
    else:
        rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        if kind == 'block':
            side = int(value)
            if side > min(h, w):
                raise UserError(f'block:{side} is larger than the {h}×{w} image')
            top, left = (h - side) // 2, (w - side) // 2
            missing = ((rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side))
        else:
            missing = (rows < h // 2) if kind == 'top' else (rows >= h // 2)
            missing = jnp.broadcast_to(missing, (h, w))
        observed = jnp.broadcast_to(~missing, (b, h, w))
    return jnp.broadcast_to(observed[..., None], (b, *example_shape)).astype(jnp.float32)


# -- likelihood of the observed pixels --------------------------------------------------------
def observed_log_lik(fns: ModelFns, x, out, mask) -> jax.Array:
    """log p(x_obs | z) = Σ_i mask_i log p(x_i | z): x, mask [b, ...], out [b, ..., k] -> [b]."""
    return jax.vmap(functools.partial(likelihoods.observed_log_prob, fns.likelihood))(
        x, out, mask > 0)


def _fold(keys: jax.Array, i) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, i)


# -- imputers ---------------------------------------------------------------------------------
def importance_impute(fns: ModelFns, params, x: jax.Array, mask: jax.Array,
                      y: Optional[jax.Array], keys: jax.Array, *, num_samples: int,
                      fill: jax.Array | float = 0.0) -> dict[str, jax.Array]:
    """Self-normalised importance-sampling estimate of E[x | x_obs].

    Args:
      fns, params: the model; x: [b, ...] (missing pixels are never read); mask: [b, ...];
      y: [b] labels (a CVAE) or None; keys: [b].
      num_samples: k; sample j of example i uses `iwae_sample_key(keys[i], j)`.
      fill: what the encoder reads at missing pixels: a scalar or [...] (e.g. the training
        pixel mean). Any value gives a consistent estimate; a good one needs fewer samples.

    Returns:
      {'imputed': [b, ...], 'log_px_obs': [b] the k-sample lower bound on log p(x_obs) (nats),
       'ess': [b] the effective sample size (Σw)² / Σw² of the k weights}.
    """
    x_in = jnp.where(mask > 0, x, fill)
    h = fns.features(params, x_in, y)

    def add(carry, j):  # online log-sum-exp: the k decoded samples are never held at once
        top, total, total_sq, acc = carry
        out, lat = fns.infer(params, h, y, jax.vmap(iwae_sample_key, (0, None))(keys, j))
        log_w = (observed_log_lik(fns, x, out, mask) + jnp.sum(lat.log_p, -1)
                 - jnp.sum(lat.log_q, -1))
        new_top = jnp.maximum(top, log_w)
        old, new = jnp.exp(top - new_top), jnp.exp(log_w - new_top)
        expand = lambda a: a.reshape(a.shape + (1,) * (x.ndim - 1))
        acc = expand(old) * acc + expand(new) * fns.mean(out)
        return (new_top, old * total + new, old ** 2 * total_sq + new ** 2, acc), None

    b = x.shape[0]
    init = (jnp.full((b,), -jnp.inf), jnp.zeros((b,)), jnp.zeros((b,)), jnp.zeros_like(x))
    (top, total, total_sq, acc), _ = jax.lax.scan(add, init, jnp.arange(num_samples))
    mean = acc / total.reshape((b,) + (1,) * (x.ndim - 1))
    return {'imputed': jnp.where(mask > 0, x, mean),
            'log_px_obs': top + jnp.log(total) - jnp.log(num_samples),
            'ess': total ** 2 / total_sq}


def pseudo_gibbs(fns: ModelFns, params, x: jax.Array, mask: jax.Array, y: Optional[jax.Array],
                 keys: jax.Array, *, iterations: int, burn_in: int,
                 fill: jax.Array | float = 0.0) -> dict[str, jax.Array]:
    """Rezende et al.'s pseudo-Gibbs chain, started from x̂ = x with missing pixels = `fill`.

    Iteration t (keys fold_in(keys, t)): z ~ q(z | x̂), x̂_mis ~ p(x_mis | z). Shapes as
    `importance_impute`; returns {'imputed': [b, ...], the mean of E[x | z_t] over t >= burn_in}.
    """
    _check_chain(iterations, burn_in)

    def step(carry, t):
        x_hat, acc = carry
        k_z, k_x = (_fold(_fold(keys, t), i) for i in (0, 1))
        out, _ = fns.infer(params, fns.features(params, x_hat, y), y, k_z)
        x_hat = jnp.where(mask > 0, x, jax.vmap(fns.likelihood.sample)(k_x, out))
        acc = acc + jnp.where(t >= burn_in, fns.mean(out), 0.0)
        return (x_hat, acc), None

    start = jnp.where(mask > 0, x, fill)
    (_, acc), _ = jax.lax.scan(step, (start, jnp.zeros_like(x)), jnp.arange(iterations))
    return {'imputed': jnp.where(mask > 0, x, acc / (iterations - burn_in))}


def metropolis_within_gibbs(fns: ModelFns, params, x: jax.Array, mask: jax.Array,
                            y: Optional[jax.Array], keys: jax.Array, *, iterations: int,
                            burn_in: int, fill: jax.Array | float = 0.0) -> dict[str, jax.Array]:
    """Mattei & Frellsen's Metropolis-within-Gibbs chain on p(z, x_mis | x_obs).

    Iteration t: propose z' ~ q(z | x̂) and accept it with probability
    min(1, [p(x̂ | z') p(z') q(z_t | x̂)] / [p(x̂ | z_t) p(z_t) q(z' | x̂)]); then
    x̂_mis ~ p(x_mis | z_{t+1}). Shapes as `pseudo_gibbs`; returns {'imputed': [b, ...],
    'acceptance': [b] the fraction of accepted proposals}.
    """
    _check_chain(iterations, burn_in)
    if len(fns.groups) != 1 or not fns.gaussian_posterior:
        raise UserError('Metropolis-within-Gibbs needs q(z|x) as one diagonal Gaussian (no flow, '
                        'no hierarchy); use importance sampling for this model')
    start = jnp.where(mask > 0, x, fill)
    # The first z from fold_in(keys, iterations): a key no iteration uses.
    out0, lat0 = fns.infer(params, fns.features(params, start, y), y, _fold(keys, iterations))

    def step(carry, t):
        x_hat, z, out, acc, accepted = carry
        k_z, k_u, k_x = (_fold(_fold(keys, t), i) for i in (0, 1, 2))
        h = fns.features(params, x_hat, y)
        new_out, lat = fns.infer(params, h, y, k_z)
        log_new = (fns.log_lik(x_hat, new_out) + jnp.sum(lat.log_p, -1)
                   - jnp.sum(lat.log_q, -1))
        log_old = (fns.log_lik(x_hat, out) + fns.prior_log_prob(params, z)
                   - jax.vmap(D.gaussian_log_prob)(z, h[0], h[1]))
        u = jax.vmap(jax.random.uniform)(k_u)
        accept = jnp.log(u) < log_new - log_old
        pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        z, out = pick(lat.z, z), pick(new_out, out)
        x_hat = jnp.where(mask > 0, x, jax.vmap(fns.likelihood.sample)(k_x, out))
        acc = acc + jnp.where(t >= burn_in, fns.mean(out), 0.0)
        return (x_hat, z, out, acc, accepted + accept), None

    init = (start, lat0.z, out0, jnp.zeros_like(x), jnp.zeros(x.shape[0]))
    (_, _, _, acc, accepted), _ = jax.lax.scan(step, init, jnp.arange(iterations))
    return {'imputed': jnp.where(mask > 0, x, acc / (iterations - burn_in)),
            'acceptance': accepted / iterations}


def _check_chain(iterations: int, burn_in: int) -> None:
    if not 0 <= burn_in < iterations:
        raise UserError(f'a chain needs 0 <= burn_in < iterations, got burn_in={burn_in}, '
                        f'iterations={iterations}')


# -- baselines --------------------------------------------------------------------------------
def mean_impute(x: jax.Array, mask: jax.Array, pixel_mean: jax.Array) -> jax.Array:
    """Missing pixels = the training set's mean of that pixel [...]: [b, ...] -> [b, ...]."""
    return jnp.where(mask > 0, x, pixel_mean)


def nearest_neighbour_impute(x: np.ndarray, mask: np.ndarray, reference: np.ndarray, *,
                             chunk: int = 250) -> np.ndarray:
    """Missing pixels copied from the reference image closest on the observed pixels.

    Args:
      x, mask: [b, ...]; reference: [n, ...] complete training images.
      chunk: examples compared at once (memory ∝ chunk × n).

    Returns:
      [b, ...]. The distance Σ_i m_i (x_i − r_i)² is expanded as
      Σ m x² − 2 (m⊙x)·r + m·r², two matrix products per chunk.
    """
    b = x.shape[0]
    xf, mf = x.reshape(b, -1).astype(np.float32), mask.reshape(b, -1).astype(np.float32)
    rf = reference.reshape(len(reference), -1).astype(np.float32)
    out = np.empty_like(xf)
    for s in range(0, b, chunk):
        xs, ms = xf[s:s + chunk], mf[s:s + chunk]
        dist = (ms * xs * xs).sum(1, keepdims=True) - 2 * (ms * xs) @ rf.T + ms @ (rf * rf).T
        nearest = rf[np.argmin(dist, axis=1)]
        out[s:s + chunk] = np.where(ms > 0, xs, nearest)
    return out.reshape(x.shape)


# -- scores -----------------------------------------------------------------------------------
def imputation_scores(truth: np.ndarray, imputed: np.ndarray, mask: np.ndarray,
                      binary: bool) -> dict[str, float]:
    """Pooled over every missing pixel of the batch: 'mse' of the imputed values (for binary
    data, the probabilities), and with binary data 'accuracy' of thresholding them at 0.5."""
    missing = np.asarray(mask) == 0
    t, p = np.asarray(truth, np.float64)[missing], np.asarray(imputed, np.float64)[missing]
    scores = {'mse': float(np.mean((p - t) ** 2)), 'missing_pixels': int(missing.sum())}
    if binary:
        scores['accuracy'] = float(np.mean((p > 0.5) == (t > 0.5)))
    return scores
