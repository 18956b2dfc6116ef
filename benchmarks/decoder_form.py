"""The conv β-VAE's train step with the decoder's CPU form of its transposed convolutions
(`convolution._upsample_conv_cpu`: forward as one convolution to all four output phases, input
gradient as one stride-2 convolution, weight gradient per phase) against the four per-phase
convolutions it replaced (`convolution._upsample_conv_phases`, forward and backward).

    python benchmarks/decoder_form.py               # ~2 minutes

As `relu_grad.py` times its forms (`grad_norm.compare`): the experiment's real pmapped train
step built with each form, the work of each compiled program, then ms per step in rotating
rounds; and the largest difference between the two runs' parameters after the same steps (the
forms round differently).
"""

import contextlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grad_norm as G  # noqa: E402
from timing import load_warning  # noqa: E402

FORMS = ('all-phase', 'per-phase')


@contextlib.contextmanager
def decoder_form(form):
    """While active, `upsample_conv` on CPU (from 4 output channels up) uses `form`."""
    from vae_jax import convolution
    saved = convolution._upsample_conv_cpu
    if form == 'per-phase':
        convolution._upsample_conv_cpu = convolution._upsample_conv_phases
    try:
        yield
    finally:
        convolution._upsample_conv_cpu = saved


def largest_difference(name, runners):
    """The largest absolute difference between the forms' parameters after the same steps."""
    import jax
    import numpy as np
    a, b = (jax.tree.leaves(runners[form].state.params) for form in FORMS)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def main():
    rows, loads = G.compare(FORMS, decoder_form, __doc__.split('\n')[0], largest_difference,
                            default_models='conv')
    G.print_table(rows, 'decoder', 'per-phase')
    for name, _, _, _, diff in rows:
        print(f'\n{name}: parameters after the same steps differ by at most {diff:.2g}')
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
