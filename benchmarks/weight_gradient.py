"""The conv β-VAE's weight gradients on this CPU: vae_jax's kernel (`vae_jax.weight_gradient`)
against XLA's forms, which vae_jax used before it, and PyTorch's.

    python benchmarks/weight_gradient.py                  # 5 rounds, both cores
    taskset -c 0 python benchmarks/weight_gradient.py --one_thread   # one core, one thread

Each row is one layer's weight gradient at batch 64, as the train step needs it (activations
and output gradients already computed, in NHWC): the encoder's 4×4 stride-2 convolutions (XLA:
the transpose of `lax.conv_general_dilated` with respect to its kernel, which XLA:CPU runs
after a transposed copy of the activations) and the decoder's 4×4 stride-2 transposed
convolutions (XLA: vae_jax's earlier four per-phase weight gradients, the transpose of
`upsample._upsample_conv_phases`). PyTorch: `aten.convolution_backward` for the weight alone,
NCHW. With the β-VAE family's XLA:CPU flags. Rounds alternate the forms; medians, ms per call,
and GFLOP/s from each layer's multiply-adds.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # Run from a checkout, uninstalled.

from timing import blocking_calls  # noqa: E402
from vae_jax import xla_setup  # noqa: E402  (sets vae_jax's XLA flags before JAX starts)

try:
    import torch
except ImportError:  # The reference column is optional.
    torch = None

# (kind, input size, input channels, output channels) at batch 64.
LAYERS = [('encoder', 32, 32, 32), ('encoder', 16, 32, 64), ('encoder', 8, 64, 64),
          ('decoder', 4, 64, 64), ('decoder', 8, 64, 32), ('decoder', 16, 32, 32)]
BATCH = 64


def jax_runners(kind, h, c_in, c_out):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vae_jax import upsample, weight_gradient
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(BATCH, h, h, c_in)), jnp.float32)
    shape = (4, 4, c_in, c_out)
    if kind == 'encoder':
        g = jnp.asarray(rng.normal(size=(BATCH, h // 2, h // 2, c_out)), jnp.float32)
        pads = ((1, 1), (1, 1))
        ours = lambda x, g: weight_gradient.conv_weight_gradient(x, g, shape, pads, 2)
        xla = lambda x, g: weight_gradient.xla_conv_weight_gradient(x, g, shape, pads, 2)
    else:
        g = jnp.asarray(rng.normal(size=(BATCH, 2 * h, 2 * h, c_out)), jnp.float32)
        ours = lambda x, g: upsample._upsample_weight_gradient(x, g, shape)
        phases = lambda w: upsample._upsample_conv_phases(x, w)
        xla = lambda x, g: jax.linear_transpose(
            phases, jax.ShapeDtypeStruct(shape, jnp.float32))(g)[0]
    a, b = jax.jit(ours)(x, g), jax.jit(xla)(x, g)
    diff = float(jnp.abs(a - b).max() / jnp.abs(b).max())
    runners = {'vae_jax': blocking_calls(jax.jit(ours), x, g),
               'XLA': blocking_calls(jax.jit(xla), x, g)}
    return runners, diff


def torch_runner(kind, h, c_in, c_out):
    torch.manual_seed(0)
    x = torch.randn(BATCH, c_in, h, h)
    transposed = kind == 'decoder'
    w = torch.randn(*((c_in, c_out) if transposed else (c_out, c_in)), 4, 4)
    out_h = 2 * h if transposed else h // 2
    g = torch.randn(BATCH, c_out, out_h, out_h)

    def run(n):
        for _ in range(n):
            torch.ops.aten.convolution_backward(g, x, w, None, [2, 2], [1, 1], [1, 1], transposed,
                                                [0, 0], 1, [False, True, False])
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--one_thread', action='store_true',
                        help='XLA:CPU and PyTorch on one thread (run under taskset -c 0)')
    args = parser.parse_args()
    xla_setup.apply_config_flags(xla_setup.BETA_VAE_CPU_FLAGS)  # before JAX starts
    if args.one_thread:
        os.environ['XLA_FLAGS'] += ' --xla_cpu_multi_thread_eigen=false'
        if torch is not None:
            torch.set_num_threads(1)
    import jax

    from timing import load_warning, measure
    from vae_jax import native
    loads = []
    print(f'jax {jax.__version__}' + (f', torch {torch.__version__} ({torch.get_num_threads()} '
                                      'threads)' if torch else '')
          + f', {args.rounds} rounds; kernel built: {native.load()}; '
          f'XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}')
    print('\n| weight gradient (batch 64, 4×4 stride 2) | vae_jax ms (GFLOP/s) | XLA ms (GFLOP/s) '
          '| XLA / vae_jax | PyTorch ms | PyTorch / vae_jax | max rel. difference |')
    print('|---|---|---|---|---|---|---|')
    for kind, h, c_in, c_out in LAYERS:
        runners, diff = jax_runners(kind, h, c_in, c_out)
        if torch is not None:
            runners['torch'] = torch_runner(kind, h, c_in, c_out)
        med = measure(runners, args.rounds, 0.3, loads)
        pixels = (h // 2) ** 2 if kind == 'encoder' else h * h  # each sums 16 taps' products
        gflop = 2 * BATCH * pixels * 16 * c_in * c_out / 1e9
        arrow = (f'{h}×{h}×{c_in} → {h // 2}×{h // 2}×{c_out}' if kind == 'encoder'
                 else f'{h}×{h}×{c_in} → {2 * h}×{2 * h}×{c_out}')
        ms = {k: 1e3 * v for k, v in med.items()}
        torch_cols = (f'{ms["torch"]:.2f} | {ms["torch"] / ms["vae_jax"]:.2f}×' if 'torch' in ms
                      else '— | —')
        print(f'| {kind} {arrow} | {ms["vae_jax"]:.2f} ({gflop / ms["vae_jax"] * 1e3:.0f}) '
              f'| {ms["XLA"]:.2f} ({gflop / ms["XLA"] * 1e3:.0f}) '
              f'| {ms["XLA"] / ms["vae_jax"]:.2f}× | {torch_cols} | {diff:.1e} |', flush=True)
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
