"""Forward and forward+backward time of ×2 upsampling layers, as formulated in JAX on this CPU.

    python benchmarks/upsampling.py           # 5 rounds: 3-5 minutes on a 2-core CPU
    python benchmarks/upsampling.py --quick   # 3 rounds: about 2 minutes
    python benchmarks/upsampling.py --beta_vae_flags   # with the β-VAE step's XLA:CPU flags

Formulations of one 4×4, stride-2 transposed convolution (PyTorch ConvTranspose2d(k=4, s=2,
p=1)) from [b, h, w, c_in] to [b, 2h, 2w, c_out]:

  flax ConvTranspose   nn.ConvTranspose(c_out, (4, 4), strides=(2, 2), padding='SAME')
  lax lhs_dilation     lax.conv_general_dilated on the input dilated ×2, explicit padding 2
  phases 2x2 pad=1     one 2×2 convolution (padding 1) to 4·c_out channels, each output phase
                       sliced out and interleaved: the same function and multiply-adds as
                       the above
  phases 2x2 VALID     the same with the input padded by jnp.pad and a VALID convolution, for
                       which XLA:CPU picks other kernels (faster or slower, by shape)
  per-phase convolutions  four 2×2 convolutions, one per output phase, interleaved
                       (upsample._upsample_conv_phases; what TransposedConvUpsample ran on
                       CPU from 4 output channels up until 2026-12-04, and still its weight
                       gradient there)
  matmul + overlap-add one matmul of the input to every tap's contribution, then each 2×2
                       block of output pixels sums its shifted taps (upsample.
                       _upsample_conv_blocks; what TransposedConvUpsample runs on CPU below
                       4 output channels)
  matmul + overlap-add, shifted slices  the same as it was before: the matmul's output padded
                       once and its shifted slices summed, whose backward pass pads every
                       slice's gradient to the full size (blocks_shifted_slices)
  SubPixelUpsample     vae_jax.upsample: 3×3 convolution to 4·c_out channels + depth-to-space,
                       a superset of the layer with 9/4 of its multiply-adds
                       (model.upsample='subpixel', vae_jax's decoder before 'transposed')
  TransposedConvUpsample  vae_jax.upsample (model.upsample='transposed', the default): the
                       layer itself. On CPU from 4 output channels up
                       (upsample._upsample_conv_cpu): forward as "phases 2x2 pad=1", the
                       input gradient as one stride-2 convolution of the output gradient, the
                       weight gradient vae_jax's kernel (vae_jax.weight_gradient; per phase
                       where it does not apply); below 4 output channels the matmul +
                       overlap-add
  torch (reference)    torch.nn.ConvTranspose2d, if PyTorch is installed

Rounds alternate the formulations, each block after waiting (up to 3 s) for other processes to
go quiet; the table gives medians. "fwd+bwd" is the gradient of a
weighted sum of the output with respect to the parameters and the input.
"""

import argparse
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from timing import load_warning, measure
from vae_jax import xla_setup
from vae_jax.convolution import depth_to_space
from vae_jax.upsample import (SubPixelUpsample, TransposedConvUpsample, _upsample_conv_blocks,
                              _upsample_conv_phases, upsample_tap_products)

try:
    import torch
except ImportError:  # The reference row is optional.
    torch = None

# (name, batch, h, c_in, c_out): the layer models.py's docstring quotes (MNIST-sized decoder),
# and the most expensive and the last upsampling of the dSprites β-VAE decoder (batch 64).
LAYERS = [('7x7x64 -> 14x14x32', 128, 7, 64, 32),
          ('16x16x32 -> 32x32x32', 64, 16, 32, 32),
          ('32x32x32 -> 64x64x1', 64, 32, 32, 1)]
_NHWC = ('NHWC', 'HWIO', 'NHWC')
# Transposed-conv tap feeding output phase a from input offset t (out = 2·in - 1 + tap).
_PHASE_TAPS = np.array([[3, 1], [2, 0]])


def convT_lhs_dilation(x, w, b):
    """w: [4, 4, c_in, c_out], out[2i - 1 + k] += x[i] w[k] (PyTorch semantics)."""
    return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((2, 2), (2, 2)),
                                    lhs_dilation=(2, 2), dimension_numbers=_NHWC) + b


def convT_phases(x, w, b, pad_first=False):
    """The same transposed convolution as one 2×2 convolution to the four output phases.

    Output row 2i + a reads input rows i - 1 + a and i + a through taps _PHASE_TAPS[a]; the
    2×2 convolution over the input padded by one gives every phase at every offset at once.
    """
    n, h, wd, c = x.shape
    f = w.shape[-1]
    k = w[_PHASE_TAPS[:, :, None, None], _PHASE_TAPS[None, None]]  # [a, ty, b, tx, c, f]
    k = k.transpose(1, 3, 4, 0, 2, 5).reshape(2, 2, c, 4 * f)
    if pad_first:
        x, pads = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 'VALID'
    else:
        pads = ((1, 1), (1, 1))
    y = lax.conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=_NHWC)
    y = y.reshape(n, h + 1, wd + 1, 2, 2, f)
    rows = [jnp.stack([y[:, a:a + h, p:p + wd, a, p] for p in (0, 1)], 3) for a in (0, 1)]
    return jnp.stack(rows, 2).reshape(n, 2 * h, 2 * wd, f) + b


def blocks_shifted_slices(x, w, b):
    """`upsample._upsample_conv_blocks` as it was before it split the matmul's output: the
    output of the one matmul padded once, and the (k/2)² shifted slices of it summed. Its
    backward pass pads each slice's gradient to the padded output's full size and adds them."""
    n, h, wd, _ = x.shape
    k, c_out = w.shape[0], w.shape[-1]
    m_taps, p = k // 2, k // 2 - 1
    e = m_taps - 1
    y = upsample_tap_products(x, w)
    y = jnp.pad(y.reshape(n, h, wd, m_taps, m_taps, 4 * c_out),
                ((0, 0), (e, e), (e, e), (0, 0), (0, 0), (0, 0)))
    blocks = functools.reduce(jnp.add, [y[:, e - m:e - m + h + e, e - q:e - q + wd + e, m, q]
                                        for m in range(m_taps) for q in range(m_taps)])
    return depth_to_space(blocks, 2)[:, p:p + 2 * h, p:p + 2 * wd] + b


def jax_layers(c_out):
    """name -> (init(key, x) -> params, apply(params, x) -> y)."""
    def explicit(fn):
        def init(key, x):
            w = nn.initializers.lecun_normal()(key, (4, 4, x.shape[-1], c_out))
            return {'w': w, 'b': jnp.zeros((c_out,))}
        return init, lambda p, x: fn(x, p['w'], p['b'])
    flax_ct = nn.ConvTranspose(c_out, (4, 4), strides=(2, 2), padding='SAME')
    subpixel = SubPixelUpsample(c_out)
    transposed = TransposedConvUpsample(c_out)
    return {'flax ConvTranspose': (flax_ct.init, flax_ct.apply),
            'lax lhs_dilation': explicit(convT_lhs_dilation),
            'phases 2x2 pad=1': explicit(convT_phases),
            'phases 2x2 VALID': explicit(functools.partial(convT_phases, pad_first=True)),
            'per-phase convolutions': explicit(lambda x, w, b: _upsample_conv_phases(x, w) + b),
            'matmul + overlap-add': explicit(lambda x, w, b: _upsample_conv_blocks(x, w) + b),
            'matmul + overlap-add, shifted slices': explicit(blocks_shifted_slices),
            'SubPixelUpsample': (subpixel.init, subpixel.apply),
            'TransposedConvUpsample': (transposed.init, transposed.apply)}


def check_phases():
    """The phase and matmul formulations equal the lhs-dilated transposed convolution."""
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 5, 6, 3))
    w = jax.random.normal(kw, (4, 4, 3, 2))
    for pad_first in (False, True):
        np.testing.assert_allclose(convT_phases(x, w, 0.0, pad_first),
                                   convT_lhs_dilation(x, w, 0.0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_upsample_conv_blocks(x, w), convT_lhs_dilation(x, w, 0.0),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(blocks_shifted_slices(x, w, 0.0), convT_lhs_dilation(x, w, 0.0),
                               rtol=1e-5, atol=1e-5)


def _repeat(f, args, n):
    for _ in range(n):
        out = f(*args)
    jax.block_until_ready(out)


def jax_runners(batch, h, c_in, c_out):
    """name -> (run_forward(n), run_forward_backward(n)), each blocking until done."""
    kx, kp, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (batch, h, h, c_in))
    g = jax.random.normal(kg, (batch, 2 * h, 2 * h, c_out))
    runners = {}
    for name, (init, apply) in jax_layers(c_out).items():
        params = init(kp, x)
        fwd = jax.jit(apply)
        # g is an argument, not a constant XLA could fold into the backward pass.
        grad = jax.jit(jax.grad(lambda p, x, g, apply=apply: jnp.sum(apply(p, x) * g),
                                argnums=(0, 1)))
        assert fwd(params, x).shape == g.shape, name
        runners[name] = (functools.partial(_repeat, fwd, (params, x)),
                         functools.partial(_repeat, grad, (params, x, g)))
    return runners


def torch_runners(batch, h, c_in, c_out):
    layer = torch.nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    x = torch.randn(batch, c_in, h, h, requires_grad=True)
    g = torch.randn(batch, c_out, 2 * h, 2 * h)

    def fwd(n):
        with torch.no_grad():
            for _ in range(n):
                layer(x)

    def fwd_bwd(n):
        for _ in range(n):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            (layer(x) * g).sum().backward()
    return {'torch (reference)': (fwd, fwd_bwd)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='3 rounds of ~0.2 s blocks')
    parser.add_argument('--beta_vae_flags', action='store_true',
                        help="the β-VAE family's XLA:CPU flags (xla_setup.BETA_VAE_CPU_FLAGS), "
                             'which its train step runs with')
    args = parser.parse_args()
    if args.beta_vae_flags:
        xla_setup.apply_config_flags(xla_setup.BETA_VAE_CPU_FLAGS)  # before JAX starts
    rounds, block_s = (3, 0.2) if args.quick else (5, 0.4)
    check_phases()
    print(f'jax {jax.__version__} ({jax.devices()[0].platform})'
          + (f', torch {torch.__version__} ({torch.get_num_threads()} threads)' if torch else '')
          + f', {rounds} rounds; XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}')
    print('\n| layer | batch | formulation | fwd ms | fwd+bwd ms | fwd+bwd / SubPixelUpsample |')
    print('|---|---|---|---|---|---|')
    loads = []
    for label, batch, h, c_in, c_out in LAYERS:
        runners = jax_runners(batch, h, c_in, c_out)
        if torch is not None:
            runners.update(torch_runners(batch, h, c_in, c_out))
        flat = {(name, i): run for name, pair in runners.items() for i, run in enumerate(pair)}
        med = {key: 1e3 * v for key, v in measure(flat, rounds, block_s, loads).items()}
        base = med['SubPixelUpsample', 1]
        for name in runners:
            print(f'| {label} | {batch} | {name} | {med[name, 0]:.2f} | {med[name, 1]:.2f} '
                  f'| {med[name, 1] / base:.2f}× |', flush=True)
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
