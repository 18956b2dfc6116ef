"""The conv β-VAE's train step with the decoder's CPU form of its transposed convolutions
(`upsample._upsample_conv_cpu`: forward as one convolution to all four output phases, then
depth-to-space and a crop; input gradient as one stride-2 convolution; weight gradient per
phase) against the same with the phases sliced out one by one and stacked ('all-phase,
sliced', its form until 2026-12-04 afternoon) and against the four per-phase convolutions it
replaced (`upsample._upsample_conv_phases`, forward and backward).

    python benchmarks/decoder_form.py               # the train step, ~3 minutes
    python benchmarks/decoder_form.py --layers      # each ×2 layer's forward pass, ~20 s
    taskset -c 0 python benchmarks/decoder_form.py --layers --one_thread   # on one core

As `relu_grad.py` times its forms (`grad_norm.compare`): the experiment's real pmapped train
step built with each form, the work of each compiled program, then ms per step in rotating
rounds; and the largest difference between each form's parameters and the first's after the
same steps (0: the same bit for bit; the per-phase form rounds differently). `--layers` times
the forward pass and ReLU of the β-VAE decoder's three 32- and 64-channel ×2 layers at batch 64,
jitted, the two all-phase forms in alternating rounds (the β-VAE family's XLA flags set).
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # Run from a checkout, uninstalled.

import grad_norm as G  # noqa: E402
from timing import load_warning  # noqa: E402

FORMS = ('all-phase', 'all-phase, sliced', 'per-phase')

# The β-VAE decoder's ×2 layers from 4 output channels up (batch 64): input, kernel.
LAYERS = (((64, 4, 4, 64), (4, 4, 64, 64)), ((64, 8, 8, 64), (4, 4, 64, 32)),
          ((64, 16, 16, 32), (4, 4, 32, 32)))


def allphase_sliced(x, kernel):
    """`upsample._upsample_conv_allphase` as it was: each phase sliced out of the all-phase
    convolution's output at its offset, the four stacked (`upsample._interleave`)."""
    import jax.numpy as jnp

    from vae_jax import upsample as U
    from vae_jax.convolution import conv_nhwc
    _, h, w, _ = x.shape
    c_out = kernel.shape[-1]
    lows, highs = zip(*(U._upsample_phase(kernel.shape[0], a)[1] for a in (0, 1)))
    low, high = max(lows), max(highs)
    both = jnp.concatenate([U._phase_kernel(kernel, a, q) for a in (0, 1) for q in (0, 1)],
                           -1)  # [m, m, c_in, (a, q, c_out)]
    y = conv_nhwc(x, both, ((low, high), (low, high)), 1)
    return U._interleave([[y[:, low - lows[a]:low - lows[a] + h, low - lows[q]:low - lows[q] + w,
                             (2 * a + q) * c_out:(2 * a + q + 1) * c_out]
                           for q in (0, 1)] for a in (0, 1)])


@contextlib.contextmanager
def decoder_form(form):
    """While active, `upsample_conv` on CPU (from 4 output channels up) uses `form`."""
    from vae_jax import upsample
    saved = upsample._upsample_conv_cpu, upsample._upsample_conv_allphase
    if form == 'per-phase':
        upsample._upsample_conv_cpu = upsample._upsample_conv_phases
    elif form == 'all-phase, sliced':
        upsample._upsample_conv_allphase = allphase_sliced
    try:
        yield
    finally:
        upsample._upsample_conv_cpu, upsample._upsample_conv_allphase = saved


def time_layers(rounds, one_thread):
    """Prints ms per forward pass (and ReLU) of each layer, both all-phase forms."""
    from vae_jax import xla_setup
    flags = G.T.config_flags('conv')
    if one_thread:
        flags += ' --xla_cpu_multi_thread_eigen=false'
    xla_setup.apply_config_flags(flags)
    import jax
    import numpy as np

    from vae_jax import activations, upsample
    forms = {'all-phase': upsample._upsample_conv_allphase,
             'all-phase, sliced': allphase_sliced}
    print(f'jax {jax.__version__}, {rounds} alternating rounds of 20 calls, '
          f'{"one thread" if one_thread else "XLA:CPU threads as set"}\n')
    print('| layer (batch 64) | all-phase, ms | all-phase, sliced, ms | sliced / all-phase |')
    print('|---|---|---|---|')
    for x_shape, k_shape in LAYERS:
        x = jax.random.normal(jax.random.key(0), x_shape)
        k = 0.1 * jax.random.normal(jax.random.key(1), k_shape)
        fns = {name: jax.jit(lambda x, k, f=f: activations.relu_minus_zero(f(x, k)))
               for name, f in forms.items()}
        outs = [np.asarray(f(x, k)) for f in fns.values()]
        assert np.array_equal(*outs), 'the two forms must give the same values'
        ms = {name: [] for name in fns}
        for _ in range(rounds):
            for name, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(20):
                    y = f(x, k)
                y.block_until_ready()
                ms[name].append((time.perf_counter() - t0) / 20 * 1e3)
        med = [statistics.median(ms[name]) for name in fns]
        _, h, w, c_in = x_shape
        print(f'| {h}×{w}×{c_in} -> {2 * h}×{2 * w}×{k_shape[-1]} | {med[0]:.3f} | '
              f'{med[1]:.3f} | {med[1] / med[0]:.2f}× |')
    print('\nThe two forms gave the same values bit for bit on every layer.')


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--layers', action='store_true')
    parser.add_argument('--one_thread', action='store_true')
    args, rest = parser.parse_known_args()
    if args.layers:
        rounds = argparse.ArgumentParser()
        rounds.add_argument('--rounds', type=int, default=15)
        time_layers(rounds.parse_args(rest).rounds, args.one_thread)
        return
    sys.argv[1:] = rest
    description = (' '.join(__doc__.split('\n\n')[0].split()) + ' Also: --layers, each ×2 '
                   "layer's forward pass alone; --one_thread with it, XLA:CPU on one thread.")
    rows, loads = G.compare(FORMS, decoder_form, description,
                            G.parameter_differences, default_models='conv')
    G.print_table(rows, 'decoder', 'all-phase, sliced')
    for name, _, _, _, diff in rows:
        print(f'\n{name}: parameters after the same steps, largest difference from '
              f'{FORMS[0]!r}: ' + ', '.join(f'{form} {d:.2g}' for form, d in diff.items()))
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
