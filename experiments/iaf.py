"""Inverse autoregressive flow posterior (Kingma et al. 2016) on static binarized MNIST.

q(z|x) is the encoder's diagonal Gaussian followed by `flow_steps` IAF steps; each step is a
MADE of z (two hidden layers of `flow_hidden` ELU units, the encoder's context h added to the
first) giving (m, s), and z <- σ ⊙ z + (1 - σ) ⊙ m with σ = sigmoid(s + 2), log q reduced by
Σ log σ; the order of z is reversed between steps (vae_jax/flows.py).

The paper's MNIST numbers (Table 1: -log p(x) ≈ 79.1 for a ResNet VAE with IAF) come from a
convolutional ResNet encoder/decoder with several stochastic layers. This config keeps the
network of experiments/vampprior.py (two gated 300-unit layers, 40 latents, N(0, I) prior,
Adam 5e-4, batch 100, KL warm-up) so that a comparison with it isolates the posterior.

    python launch.py --config=experiments/iaf.py --workdir=runs/iaf
    python launch.py --config=experiments/iaf.py:quick --workdir=runs/iaf_quick
    python launch.py --mode=eval --workdir=runs/iaf_quick

Arguments (checked against `ARGS`): `epochs=E` (default 2000), `steps=N` (overrides epochs),
`flow_steps=T` (default 2), `hidden=H` (default 320), `quick` (3,000 steps, a 1,000-sample bound
on 1,000 test images: a few minutes on a 2-core CPU).
"""

from experiments import vampprior
from vae_jax.configs import parse_arg

ARGS = dict(epochs=2000.0, steps=0, flow_steps=2, hidden=320, quick=False)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = vampprior.get_config(','.join(
        [f'epochs={args.epochs}', f'steps={args.steps}', 'prior=standard_normal']
        + (['quick'] if args.quick else [])))
    c.model.prior_components = 10  # unused with the N(0, I) prior: back to its default
    c.model.posterior = 'iaf'
    c.model.flow_steps = args.flow_steps
    c.model.flow_hidden = args.hidden
    return c
