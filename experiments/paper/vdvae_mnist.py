"""A VDVAE-style hierarchy on binarized MNIST against Efficient-VDVAE's −log p(x) = 79.09
(Hazami et al. 2022, their binarized-MNIST table), as far as a CPU takes it.

experiments/vdvae.py's model (6 latent groups at 4×4, 8×8 and 16×16, width 32, Adam 1e-3 with
warm-up and cosine decay, KL warm-up, update skipping, EMA 0.999, batch 100) on Larochelle's
static binarized MNIST, 100 epochs (50k steps); test bound with k = 1,000 on the 10k test
images. This is the architecture at a size a CPU trains, not the published model (tens of
groups at width 100s, trained for days on GPUs): the row measures how far the small one gets.

    python -m vae_jax.ledger run --rows=vdvae_mnist
    python -m vae_jax.ledger run --rows=vdvae_mnist --arg=steps=4000,test_examples=1000

`test_examples=N` bounds only the first N test images (the k = 1,000 bound of the whole test
split costs ~10M decoder passes, hours on a CPU); the ledger's table says so.
"""

from experiments import vdvae
from experiments.paper import _recipes
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Hazami et al. 2022 (Efficient-VDVAE)',
                      setting='VDVAE, binarized MNIST',
                      value=79.09, metric='nll', paper_steps=50_000,
                      note='a far smaller model than the published one; steps are ours (100 '
                           'epochs), not the paper\'s')


ARGS = dict(ROW_ARGS, test_examples=0)  # 0: the whole test split


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = vdvae.get_config(f'steps={args.steps}' if args.steps else 'steps=50000')
    c.eval.iwae_samples = 1000
    c.eval.iwae_examples = args.test_examples
    c = _recipes.finish(c, args.steps, PUBLISHED.paper_steps)
    c.objective.kl_warmup_steps = min(10_000, c.num_steps // 3)
    return c


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ARGS).seeds)
