"""Pictures of a VAE: the grids logged during training, interpolations, latent traversals, the
2-D manifold, class grids.

`training_grids` takes `grid_arrays` bound to the model's `ModelFns`; the others are
independent of Flax and take two callables (e.g. jitted `ModelFns.decode_mean` and the posterior mean of `ModelFns.encode`):

    decode_mean(z [n, z], y [n] int or None) -> E[x | z, y]: images [n, h, w, c]
    encode_mean(x [n, h, w, c], y [n] int or None) -> posterior means [n, z]

Each `*_tiles` function returns the decoded tiles as [rows, cols, h, w, c] (for a notebook, an
animation, a test); each `*_picture` lays them out, upscaled and labelled, as one [H, W, c]
float32 picture in [0, 1] for `MetricWriter.image` or a PNG.
"""

import functools
from statistics import NormalDist
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import images
from vae_jax.images import tile_picture

Decode = Callable[[jax.Array, Optional[jax.Array]], jax.Array]
Encode = Callable[[jax.Array, Optional[jax.Array]], jax.Array]


@functools.partial(jax.jit, static_argnames=('n', 'method'))
def interpolate(z0: jax.Array, z1: jax.Array, n: int, method: str = 'linear') -> jax.Array:
    """n evenly spaced points from z0 to z1, both included: z0, z1 [z] -> [n, z].

    'slerp' walks the great circle (White 2016, "Sampling generative networks"):
    sin((1-t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1, Ω the angle between z0 and z1. With endpoints
    of equal norm every point keeps that norm; under a high-dimensional N(0, I) prior the mass
    lies near the sphere of radius √z, and the linear path's midpoint falls inside it, where the
    decoder saw few codes. Where Ω is ~0 (near-parallel), ~π (antiparallel: no unique circle)
    or an endpoint is zero, sin Ω vanishes and slerp falls back to its linear limit.
    """
    t = jnp.linspace(0.0, 1.0, n)[:, None]
    if method == 'linear':
        return (1 - t) * z0 + t * z1
    if method != 'slerp':
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    n0, n1 = jnp.linalg.norm(z0), jnp.linalg.norm(z1)
    u0, u1 = z0 / jnp.where(n0 > 0, n0, 1), z1 / jnp.where(n1 > 0, n1, 1)
    # Ω = 2·atan2(|u0 - u1|, |u0 + u1|) (Kahan) stays accurate near 0 and π, where arccos of
    # the dot product loses half the digits.
    omega = 2 * jnp.arctan2(jnp.linalg.norm(u0 - u1), jnp.linalg.norm(u0 + u1))
    sin = jnp.sin(omega)
    ok = (sin > 1e-4) & (n0 > 0) & (n1 > 0)
    sin = jnp.where(ok, sin, 1.0)
    w0 = jnp.where(ok, jnp.sin((1 - t) * omega) / sin, 1 - t)
    w1 = jnp.where(ok, jnp.sin(t * omega) / sin, t)
    return w0 * z0 + w1 * z1


def _decode(decode_mean: Decode, z, y) -> np.ndarray:
    """z [r, k, z], y [r, k] int or None -> images [r, k, h, w, c] as numpy."""
    r, k = z.shape[:2]
    flat_y = None if y is None else jnp.reshape(jnp.asarray(y), (r * k,))
    out = np.asarray(decode_mean(jnp.reshape(jnp.asarray(z), (r * k, -1)), flat_y))
    return out.reshape(r, k, *out.shape[1:])


def _labels_like(y, shape):
    """A CVAE label given as [] or [rows] broadcast over [rows, cols]; None stays None."""
    if y is None:
        return None
    y = np.asarray(y)
    return np.broadcast_to(y.reshape(-1, 1) if y.ndim else y, shape)


def interpolation_tiles(decode_mean: Decode, encode_mean: Encode, x0, x1, n: int = 8, *,
                        y=None, method: str = 'linear') -> np.ndarray:
    """Decoded interpolations between the posterior means of pairs of images.

    Args:
      x0, x1: [p, h, w, c] the two ends of each of the p rows.
      n: decoded points per row; the first and last are the reconstructions of x0 and x1.
      y: for a CVAE, [p] int, the class of both images of a pair (the row is decoded with it).
      method: 'linear' or 'slerp' (see `interpolate`).

    Returns:
      [p, n + 2, h, w, c]: x0, the n decodings from z0 to z1, x1.
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    z0, z1 = encode_mean(jnp.asarray(x0), y), encode_mean(jnp.asarray(x1), y)
    z = jax.vmap(functools.partial(interpolate, n=n, method=method))(z0, z1)  # [p, n, z]
    decoded = _decode(decode_mean, z, _labels_like(y, z.shape[:2]))
    return np.concatenate([x0[:, None], decoded, x1[:, None]], axis=1)


def interpolation_picture(decode_mean: Decode, encode_mean: Encode, x0, x1, n: int = 8, *,
                          y=None, method: str = 'linear', labels: bool = True,
                          scale: int | None = None) -> np.ndarray:
    """`interpolation_tiles` as one picture: inputs set apart at both ends of every row."""
    tiles = interpolation_tiles(decode_mean, encode_mean, x0, x1, n, y=y, method=method)
    cols = ['input', 'recon'] + [''] * (n - 2) + ['recon', 'input'] if labels else None
    return tile_picture(tiles, col_labels=cols, scale=scale, gaps=(1, n + 1))


def traversal_tiles(decode_mean: Decode, base, kl_per_dim, n: int = 9, *,
                    top: int | None = None, span: float = 3.0,
                    y=None) -> tuple[np.ndarray, np.ndarray]:
    """Each latent dimension swept over [-span, span] with the others held at `base`.

    Rows are ordered by KL, largest first: the dimensions that carry information come first,
    and those the model switched off (KL ≈ 0, posterior = prior) sink to the bottom, where
    their rows show one image repeated.

    Args:
      base: [z] codes of the other dimensions (a test image's posterior mean, or zeros).
      kl_per_dim: [z] KL(q(z_d|x) || p(z_d)) of each dimension averaged over data (e.g.
        `evaluate.latents.kl_per_dim(mean, logvar)`).
      n: values per row, linspace(-span, span, n); they replace base[d], they are not added.
      top: keep only the `top` highest-KL dimensions; None keeps all.
      y: for a CVAE, [] int, the class every tile is decoded with.

    Returns:
      (tiles [m, n, h, w, c], dims [m] int: the dimension swept in each row).
    """
    base = np.asarray(base, np.float32)
    dims = np.argsort(-np.asarray(kl_per_dim), kind='stable')[:top]
    z = np.tile(base, (len(dims), n, 1))
    z[np.arange(len(dims)), :, dims] = np.linspace(-span, span, n, dtype=np.float32)
    return _decode(decode_mean, z, _labels_like(y, z.shape[:2])), dims


def traversal_picture(decode_mean: Decode, base, kl_per_dim, n: int = 9, *,
                      top: int | None = None, span: float = 3.0, y=None, labels: bool = True,
                      scale: int | None = None) -> np.ndarray:
    """`traversal_tiles` as one picture; rows labelled 'z<d> KL <nats>', columns by value."""
    tiles, dims = traversal_tiles(decode_mean, base, kl_per_dim, n, top=top, span=span, y=y)
    kl = np.asarray(kl_per_dim)
    rows = [f'z{d}  KL {kl[d]:.2f}' for d in dims] if labels else None
    cols = [_number(v) for v in np.linspace(-span, span, n)] if labels else None
    return tile_picture(tiles, row_labels=rows, col_labels=cols, scale=scale)


def _number(v: float) -> str:
    """Short signed label: -3, -2.25, 0, +0.75."""
    text = f'{v:+.2f}'.rstrip('0').rstrip('.')
    return '0' if text in ('+0', '-0') else text


def normal_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """Φ⁻¹(linspace(low, high, n)): [n] points with equal N(0, 1) mass between neighbours."""
    # The standard library's inverse CDF (Wichura's AS241, ~1e-16): no jax dispatch, no scipy.
    return np.asarray([NormalDist().inv_cdf(p) for p in np.linspace(low, high, n)])


def manifold_tiles(decode_mean: Decode, n: int = 15, *, latents: int = 2,
                   dims: Sequence[int] = (0, 1), low: float = 0.05, high: float = 0.95,
                   y=None) -> np.ndarray:
    """Decodings of a grid over the prior's quantiles (Kingma & Welling 2014, figure 4).

    z[dims[0]] grows left to right and z[dims[1]] bottom to top (as in a scatter plot of the
    codes), both over `normal_quantiles(n, low, high)`; the other `latents - 2` dimensions are 0.

    Returns:
      [n, n, h, w, c]; tile [i, j] decodes z[dims[0]] = q[j], z[dims[1]] = q[n - 1 - i].
    """
    q = normal_quantiles(n, low, high).astype(np.float32)
    z = np.zeros((n, n, latents), np.float32)
    z[:, :, dims[0]] = q[None, :]
    z[:, :, dims[1]] = q[::-1, None]
    return _decode(decode_mean, z, _labels_like(y, z.shape[:2]))


def manifold_picture(decode_mean: Decode, n: int = 15, *, latents: int = 2,
                     dims: Sequence[int] = (0, 1), low: float = 0.05, high: float = 0.95,
                     y=None, labels: bool = True, scale: int | None = None) -> np.ndarray:
    """`manifold_tiles` as one picture; rows and columns labelled with their z values."""
    tiles = manifold_tiles(decode_mean, n, latents=latents, dims=dims, low=low, high=high, y=y)
    q = normal_quantiles(n, low, high)
    rows = [_number(v) for v in q[::-1]] if labels else None
    cols = [_number(v) for v in q] if labels else None
    corner = f'z{dims[1]} \\ z{dims[0]}' if labels else None
    return tile_picture(tiles, row_labels=rows, col_labels=cols, corner=corner, scale=scale)


def class_tiles(key: jax.Array, decode_mean: Decode, classes, n: int,
                latents: int) -> np.ndarray:
    """A CVAE's class-by-style table: row i decodes class classes[i], column j one z_j ~ N(0, I).

    Every row reuses the same n codes, so a column shows one "style" (slant, stroke width,
    size) rendered as every class: what z holds once the label is given.

    Returns:
      [len(classes), n, h, w, c].
    """
    classes = np.asarray(classes)
    z = jax.random.normal(key, (n, latents))
    z = jnp.broadcast_to(z, (len(classes), n, latents))
    return _decode(decode_mean, z, _labels_like(classes, z.shape[:2]))


def class_picture(key: jax.Array, decode_mean: Decode, classes, n: int = 10, *, latents: int,
                  class_names: Sequence[str] | None = None, labels: bool = True,
                  scale: int | None = None) -> np.ndarray:
    """`class_tiles` as one picture; rows labelled with class_names[c] (or c)."""
    tiles = class_tiles(key, decode_mean, classes, n, latents)
    names = [str(c) if class_names is None else class_names[c] for c in np.asarray(classes)]
    return tile_picture(tiles, row_labels=names if labels else None, scale=scale)


def latent_scatter(means, labels=None, *, class_names: Sequence[str] | None = None,
                   dims: Sequence[int] = (0, 1), size: tuple[int, int] = (640, 520),
                   title: str | None = None) -> np.ndarray:
    """Scatter plot of posterior means coloured by label, rendered with matplotlib (Agg).

    Args:
      means: [n, z] posterior means; dims picks the two plotted (for z > 2, e.g. the two
        highest-KL dimensions).
      labels: [n] int class of each point, or None (one colour).
      class_names: legend text for each class (default: the class number).
      size: (width, height) of the picture in pixels.

    Returns:
      [height, width, 3] float32 in [0, 1]; class c is drawn in `scatter_colors(k)[c]`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: only plots need it
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    means = np.asarray(means)[:, list(dims)]
    labels = np.zeros(len(means), int) if labels is None else np.asarray(labels)
    k = int(labels.max()) + 1
    colors = scatter_colors(k)
    # A fixed shuffle so that no class is drawn entirely on top of the others.
    order = np.random.default_rng(0).permutation(len(means))
    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(means[order, 0], means[order, 1], c=colors[labels[order]], s=4, linewidths=0)
    ax.set_xlabel(f'z{dims[0]}')
    ax.set_ylabel(f'z{dims[1]}')
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if k > 1:
        names = [str(c) if class_names is None else class_names[c] for c in range(k)]
        handles = [Line2D([], [], ls='', marker='o', color=colors[c]) for c in range(k)]
        ax.legend(handles, names, loc='center left', bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255


def scatter_colors(k: int) -> np.ndarray:
    """[k, 3] RGB in [0, 1]: matplotlib's tab10 for up to 10 classes, tab20 up to 20, then hsv."""
    from matplotlib import colormaps
    name = 'tab10' if k <= 10 else 'tab20' if k <= 20 else 'hsv'
    cmap = colormaps[name]
    return np.asarray([cmap(c if k <= 20 else c / k)[:3] for c in range(k)])


def grid_arrays(fns, params, x: jax.Array, y: jax.Array, key: jax.Array, rows: int):
    """The arrays of `training_grids`, jittable (`rows` static): (decoded posterior means of
    x [n, *shape], decoded prior samples [8 * rows, *shape], `rows` classes for a CVAE)."""
    mean, _ = fns.encode(params, x, y)
    recon = fns.decode_mean(params, mean, y)
    labels = jnp.repeat(jnp.arange(rows), 8) if fns.conditional else jnp.zeros(8 * rows, int)
    return recon, fns.decode_mean(params, fns.sample_prior(params, key, len(labels)), labels)


def training_grids(arrays, params, source, config, key: jax.Array) -> dict[str, np.ndarray]:
    """The pictures each periodic eval logs: inputs above their reconstructions (decoded
    posterior means) and decoded prior samples (one row per class for a CVAE).

    `arrays` is `grid_arrays` with the model's `ModelFns` bound (jitted once by the loop, so
    that every eval reuses its compiled code).
    Inputs are spread over the split: dSprites' eval set is sorted by factor, so its first
    rows would all be small squares. {} for data that are not images.
    """
    if len(source.example_shape) != 3:
        return {}
    n = config.num_image_examples
    batch = source.get_batch(np.linspace(0, source.num_examples - 1, n).astype(np.int64))
    x, y = jnp.asarray(batch['image']), jnp.asarray(batch['label'])
    rows = source.num_classes if config.model.conditional else 8
    recon, samples = arrays(params, x, y, key, rows)
    return {'reconstructions': images.side_by_side(np.asarray(x), np.asarray(recon)),
            'samples': images.grid(np.asarray(samples), rows=rows)}
