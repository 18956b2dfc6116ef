"""VampPrior (Tomczak & Welling 2018), Table 2: VAE + VampPrior on static binarized MNIST,
−log p(x) = 85.57 (Pythae reached 85.79).

experiments/vampprior.py's network and protocol (gated 300-300 MLPs, 40 latents, K = 500
pseudo-inputs, Adam 5e-4, batch 100, KL warm-up over 100 epochs) with the paper code's He-normal
initialisation (`model.init='he'`), for the paper's 2,000 epochs (1M steps); test bound with
k = 5,000 on the 10k test images. Differences: no early stopping on the validation bound (the
paper stops after 50 epochs without improvement); plain Adam (the paper normalises each
gradient tensor first).

    python -m vae_jax.ledger run --rows=vampprior_k500
    python -m vae_jax.ledger run --rows=vampprior_k500 --arg=steps=100000
"""

from experiments import vampprior
from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Tomczak & Welling 2018, Table 2', setting='VAE + VampPrior, K=500',
                      value=85.57, metric='nll', paper_steps=1_000_000,
                      others=(('Pythae', 85.79),), note='no early stopping; plain Adam')


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = vampprior.get_config(f'steps={args.steps}' if args.steps else None)
    c.model.init = 'he'
    c.eval.iwae_samples = 5000
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
