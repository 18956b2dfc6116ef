"""Conditional VAE (Sohn et al. 2015) on MNIST: the label's one-hot feeds encoder and decoder.

MLP 784-500-500-20, Bernoulli likelihood on dynamically binarized MNIST (pixels resampled
from their intensities at every step), Adam 1e-3, batch 128, 20 epochs. The samples grid has
one row per digit class: row k shows eight samples of digit k.

    python launch.py --config=experiments/cvae.py --workdir=runs/cvae
    python launch.py --config=experiments/cvae.py:epochs=2 --workdir=runs/cvae_short

Arguments (checked against `ARGS`): `epochs=E` (default 20).

Runtime on a 2-core CPU: 2.5 minutes for 20 epochs (9,360 steps). Expected result (measured,
seed 0): class-conditional test -ELBO 92.8 nats, and row k of images/samples_*.png shows
eight different-looking samples of digit k.
"""

from vae_jax.configs import base_config, parse_arg

ARGS = dict(epochs=20.0)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = base_config()
    c.data.name = 'mnist'
    c.data.binarize = 'dynamic'
    c.model.encoder = 'mlp'
    c.model.hidden = (500, 500)
    c.model.latents = 20
    c.model.conditional = True
    c.optim.learning_rate = 1e-3
    c.batch_size = 128
    c.num_epochs = args.epochs
    c.log_every = 200
    c.checkpoint_every = 2000
    return c
