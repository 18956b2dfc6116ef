"""VampPrior (Tomczak & Welling 2018), Table 2: HVAE (L=2) + VampPrior on static binarized
MNIST, −log p(x) = 83.19.

The paper's two-level model (`model.name='gated_hvae'`, vae_jax/gated_hierarchy.py):
q(z2|x) q(z1|x,z2), p(z2) p(z1|z2) p(x|z1,z2), gated dense layers of 300 units, 40 latents per
level, log-variances clipped to [-6, 2], He-normal weights; p(z2) the VampPrior with K = 500
pseudo-inputs (initialised N(0.05, 0.01²)). Protocol as the one-level row (vampprior_k500):
Larochelle's static binarized MNIST (50k train), Adam 5e-4, batch 100, KL warm-up over 100
epochs, 2,000 epochs (1M steps); test bound with k = 5,000 on the 10k test images.
Differences: no early stopping; plain Adam (the paper normalises each gradient tensor first).

    python -m vae_jax.ledger run --rows=vampprior_hvae
    python -m vae_jax.ledger run --rows=vampprior_hvae --arg=steps=100000
"""

from experiments import vampprior
from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Tomczak & Welling 2018, Table 2',
                      setting='HVAE (L=2) + VampPrior, K=500', value=83.19, metric='nll',
                      paper_steps=1_000_000, note='no early stopping; plain Adam')


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = vampprior.get_config(f'steps={args.steps}' if args.steps else None)
    c.model.name = 'gated_hvae'
    c.model.hidden = (300,)
    c.model.init = 'he'
    c.eval.iwae_samples = 5000
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
