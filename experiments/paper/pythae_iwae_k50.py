"""IWAE with k=50 on static binarized MNIST: −log p(x) = 87.1 published (the reference of
Pythae's reproducibility table), 86.82 reached by Pythae.

Pythae's script (examples/scripts/reproducibility/iwae.py), which is Burda et al.'s one-layer
network (`_recipes.burda`) on Larochelle's static binarization: 784-200-200-50 tanh MLPs,
Glorot-uniform weights, zero biases; 50k training images; batch 20, Adam 1e-3 with ε 1e-4,
3,280 epochs (8.2M steps) with the learning rate falling by 10^(-1/7) at each of Burda's
stage boundaries (Pythae's milestone list differs slightly); k = 50 in training; test bound
with k = 5,000 on the 10k test images. Pythae evaluates its best-on-validation epoch.

    python -m vae_jax.ledger run --rows=pythae_iwae_k50
    python -m vae_jax.ledger run --rows=pythae_iwae_k50 --arg=steps=100000
"""

from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Pythae reproducibility table (IWAE)', setting='IWAE k=50, static',
                      value=87.1, metric='nll', paper_steps=8_200_000,
                      others=(('Pythae', 86.82),))


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = _recipes.burda(layers=1, data='static')
    c.objective.name, c.objective.num_samples = 'iwae', 50
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
