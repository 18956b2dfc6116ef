"""Rainforth et al. 2018 ("Tighter variational bounds are not necessarily better"), Table 1:
CIWAE(β=0.05), 64 samples on MNIST, −log p(x) = 84.57 (as Pythae's reproduction table cites it;
Pythae reached 84.74).

Trained on β·ELBO + (1−β)·IWAE(64) with β = 0.05: a budget of 64 weights per example. Otherwise
Burda et al.'s one-stochastic-layer setup (`_recipes.burda`): 784-200-200-50 tanh MLPs,
dynamically binarized MNIST (59,600 training images), batch 20, Adam ε 1e-4, the 3,280-epoch
schedule (9.77M steps); test bound with k = 5,000 on the 10k test images.

    python -m vae_jax.ledger run --rows=rainforth_ciwae_005
    python -m vae_jax.ledger run --rows=rainforth_ciwae_005 --arg=steps=100000
"""

from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Rainforth et al. 2018, Table 1', setting='CIWAE(β=0.05), 64 samples',
                      value=84.57, metric='nll', paper_steps=9_774_400, others=(('Pythae', 84.74),))


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = _recipes.burda(layers=1)
    c.objective.name, c.objective.num_samples, c.objective.elbo_weight = 'ciwae', 64, 0.05
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
