"""IWAE (Burda et al. 2015): the experiments/vae.py model trained on the k-sample bound.

MLP 784-500-20, Bernoulli, static binarized MNIST, Adam 1e-3, batch 128, 30 epochs; the loss
is minus the importance-weighted bound with k = 5 samples per example instead of the ELBO.

    python launch.py --config=experiments/iwae.py --workdir=runs/iwae
    python launch.py --config=experiments/iwae.py:epochs=5,k=5 --workdir=runs/iwae5

Arguments (comma separated, checked against `ARGS`: experiments/vae.py's and `k`): `epochs=E`
(default 30), `k=K` (default 5). `seeds=N` is accepted, as vae.py's, and unused: this file
defines no sweep.

Runtime on a 2-core CPU (no accelerator): 48 s for 5 epochs (1,950 steps, ~65 steps/s, twice
vae.py's time: five decoder passes per example), so about 5 minutes for 30.

Expected result: a worse test -ELBO than the ELBO-trained vae.py but a better log-likelihood
(Burda et al. 2015, table 1). Measured after 5 epochs (`:epochs=5`, seed 0), with the k = 5000
bound on the 10k test images (`evaluate_likelihood` in vae_jax/evaluate/likelihood.py, with
the run's eval key, as `launch.py --mode=eval --workdir=runs/iwae5` calls it; ~4 min each):

    objective            test -ELBO   test NLL (k=5000)
    ELBO (vae.py)          106.35         100.38
    IWAE k=5 (this)        107.36          98.89
"""

from experiments import vae
from vae_jax.configs import parse_arg

ARGS = dict(vae.ARGS, k=5)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = vae.build(args.epochs)
    c.objective.name = 'iwae'
    c.objective.num_samples = args.k
    return c
