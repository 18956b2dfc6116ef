"""The dSprites conv encoder on this CPU: each strided layer as vae_jax computes it against lax
and PyTorch, and the whole encoder's forward throughput by images per call.

    python benchmarks/conv_layers.py           # 5 rounds: about 2 minutes on a 2-core CPU
    python benchmarks/conv_layers.py --quick   # 3 rounds
    python benchmarks/conv_layers.py --beta_vae_flags   # with the β-VAE family's XLA:CPU flags

Part 1, the encoder's four 4×4 stride-2 convolutions (batch 64; bias and ReLU left out):
forward and forward+backward ms of `vae_jax.convolution.Conv`'s function (`strided_conv`: its
input gradient through space-to-depth, and its forward pass too below
`S2D_FORWARD_CHANNELS` input channels), of `lax.conv_general_dilated`, and of PyTorch's Conv2d
if PyTorch is installed. The first layer's input gradient is never needed (it is the data), so
none is taken there. Part 2: images/s of the jitted encoder (`experiments/beta_vae.py`'s model,
its posterior means) in calls of 64 to 2,048 images, as the disentanglement metrics call it
(`vae_jax.evaluate.factor_report.ENCODE_BATCH`), and the same for the MLP encoder of
`experiments/vae.py`. Rounds alternate the formulations; medians.
"""

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # Run from a checkout, uninstalled.

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from timing import blocking_calls, load_warning, measure
from vae_jax import convolution, xla_setup
from vae_jax.model_fns import build as build_model_fns

try:
    import torch
except ImportError:  # The reference column is optional.
    torch = None

DN = ('NHWC', 'HWIO', 'NHWC')
# (input size, input channels, output channels) of the encoder's layers at batch 64.
LAYERS = [(64, 1, 32), (32, 32, 32), (16, 32, 64), (8, 64, 64)]
PADS = ((1, 1), (1, 1))


def jax_layer_runners(h, c_in, c_out, first):
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.random((64, h, h, c_in)) < 0.3).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(4, 4, c_in, c_out)) / np.sqrt(16 * c_in), jnp.float32)
    runners = {}
    for name, conv in (('vae_jax', convolution.strided_conv),
                       ('lax', lax.conv_general_dilated)):
        f = lambda x, w, conv=conv: conv(x, w, (2, 2), PADS, dimension_numbers=DN)
        loss = lambda w, x, f=f: jnp.sum(f(x, w) ** 2)
        grad = jax.grad(loss, argnums=0 if first else (0, 1))
        runners[name] = (blocking_calls(jax.jit(f), x, w),
                         blocking_calls(jax.jit(grad), w, x))
    return runners


def torch_layer_runners(h, c_in, c_out, first):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)
    x = (torch.rand(64, c_in, h, h) < 0.3).float().requires_grad_(not first)

    def fwd(n):
        with torch.no_grad():
            for _ in range(n):
                conv(x)

    def fwd_bwd(n):
        for _ in range(n):
            conv.zero_grad()
            (conv(x) ** 2).sum().backward()
    return {'torch': (fwd, fwd_bwd)}


def load_config(filename):
    spec = importlib.util.spec_from_file_location(filename[:-3], ROOT / 'experiments' / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def encoder_runners(filename, shape, batches):
    """{batch: run(n)}: n jitted encoder calls of `batch` images, each fetched as numpy."""
    config = load_config(filename)
    fns = build_model_fns(config.model, shape, num_classes=0)
    params = fns.module.init(jax.random.key(0), jnp.zeros((1, *shape)))['params']
    encode = jax.jit(lambda p, x: fns.encode(p, x)[0])
    rng = np.random.default_rng(0)
    runners = {}
    for b in batches:
        x = (rng.random((b, *shape)) < 0.3).astype(np.float32)

        def run(n, x=x):
            for _ in range(n):
                np.asarray(encode(params, x))
        runners[b] = run
    return runners


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='3 rounds of ~0.2 s blocks')
    parser.add_argument('--beta_vae_flags', action='store_true',
                        help="the β-VAE family's XLA:CPU flags (xla_setup.BETA_VAE_CPU_FLAGS), "
                             'which its training process, and so its metrics, run with')
    args = parser.parse_args()
    if args.beta_vae_flags:
        xla_setup.apply_config_flags(xla_setup.BETA_VAE_CPU_FLAGS)  # before JAX starts
    rounds, block_s = (3, 0.2) if args.quick else (5, 0.4)
    loads = []
    print(f'jax {jax.__version__} ({jax.devices()[0].platform})'
          + (f', torch {torch.__version__} ({torch.get_num_threads()} threads)' if torch else '')
          + f', {rounds} rounds; XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}')
    print('\n| layer (batch 64, 4×4 stride 2) | formulation | fwd ms | fwd+bwd ms |')
    print('|---|---|---|---|')
    for i, (h, c_in, c_out) in enumerate(LAYERS):
        runners = jax_layer_runners(h, c_in, c_out, first=i == 0)
        if torch is not None:
            runners.update(torch_layer_runners(h, c_in, c_out, first=i == 0))
        flat = {(name, j): pair[j] for name, pair in runners.items() for j in (0, 1)}
        med = measure(flat, rounds, block_s, loads)
        for name in runners:
            print(f'| {h}×{h}×{c_in} → {h // 2}×{h // 2}×{c_out} | {name} '
                  f'| {1e3 * med[name, 0]:.2f} | {1e3 * med[name, 1]:.2f} |', flush=True)
    print('\n| encoder | images per call | images/s |')
    print('|---|---|---|')
    for filename, shape in (('beta_vae.py', (64, 64, 1)), ('vae.py', (28, 28, 1))):
        batches = (64, 128, 256, 512, 1024, 2048)
        med = measure(encoder_runners(filename, shape, batches), rounds, block_s, loads)
        for b, s in med.items():
            print(f'| {filename} | {b} | {b / s:,.0f} |', flush=True)
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
