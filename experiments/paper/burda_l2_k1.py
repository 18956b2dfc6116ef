"""Burda et al. 2015, Table 1 (MNIST): VAE, 2 stochastic layers, k=1, −log p(x) = 85.33.

Trained on the ELBO (k=1); everything else is Burda et al.'s protocol,
`_recipes.burda(layers=2)` (its docstring lists the network, data, optimizer, schedule, the k =
5,000 test bound and the differences from the paper's code). 3,280 epochs are 9.77M steps.

    python -m vae_jax.ledger run --rows=burda_l2_k1                      # the full 9.77M steps
    python -m vae_jax.ledger run --rows=burda_l2_k1 --arg=steps=300000   # compressed schedule
"""

from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Burda et al. 2015, Table 1', setting='VAE, 2 stochastic layers, k=1',
                      value=85.33, metric='nll', paper_steps=9_774_400)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = _recipes.burda(layers=2)
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
