"""MIWAE (Mattei & Frellsen 2019): the experiments/iwae.py model trained on incomplete images.

Static binarized MNIST whose training images each lack a fixed random `missing` fraction of
their pixels (missing completely at random, `data.train_missing`); the encoder reads 0 at a
missing pixel and the loss is minus the k-sample bound on log p(x_obs) (`objective.name=
'missing_iwae'`). The test split stays complete: the periodic eval's −ELBO is that of whole
images, and `python -m vae_jax.evaluate.imputation` completes damaged test images with it.

    python launch.py --config=experiments/missing_data.py --workdir=runs/miwae_missing
    python launch.py --config=experiments/missing_data.py:missing=0.5,epochs=10,k=5 --workdir=runs/m50
    python -m vae_jax.evaluate.imputation --workdir=runs/m50 --masks=random:0.5

Arguments (checked against `ARGS`: experiments/iwae.py's and `missing`): `missing=P`
(default 0.5), `k=K` (default 5), `epochs=E` (default 30); `seeds=N` is accepted, as vae.py's,
and unused: this file defines no sweep.
"""

from experiments import iwae
from vae_jax.configs import parse_arg

ARGS = dict(iwae.ARGS, missing=0.5)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = iwae.get_config(f'epochs={args.epochs},k={args.k}')
    c.objective.name = 'missing_iwae'
    c.data.train_missing = args.missing
    return c
