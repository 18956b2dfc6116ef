"""Burda et al. 2015, Table 1 (MNIST): VAE, 1 stochastic layer, k=1, −log p(x) = 86.76.

Trained on the ELBO (k=1). Network 784-200-200-50 (one stochastic layer of 50 units), tanh MLPs,
every conditional a diagonal Gaussian, Glorot-uniform weights. Dynamically binarized MNIST: the
first 59,600 training images (the paper validates on the last 400; TFDS's order, not the
paper's), 10k test images. Batch 20; Adam β1 0.9, β2 0.999, ε 1e-4; learning rate 1e-3·10^(-i/7)
for 3^i epochs, i = 0…7 (3,280 epochs, 9.77M steps). Evaluated with the k = 5,000 importance-
weighted bound on the 10k test images. Differences: the output bias starts at zero (the paper:
the logit of the training mean); Adam's moments start at zero as in the paper's description.

    python -m vae_jax.ledger run --rows=burda_l1_k1                      # the full 9.77M steps
    python -m vae_jax.ledger run --rows=burda_l1_k1 --arg=steps=300000   # compressed schedule
"""

from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Burda et al. 2015, Table 1', setting='VAE, 1 stochastic layer, k=1',
                      value=86.76, metric='nll', paper_steps=9_774_400)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = _recipes.burda(layers=1)
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
