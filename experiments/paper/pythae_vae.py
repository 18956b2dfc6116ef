"""VAE on static binarized MNIST, Pythae's reproduction recipe: −log p(x) = 89.9 published
(the figure Pythae's reproducibility table gives as the reference), 89.78 reached by Pythae.

Pythae's script (benchmark_VAE, examples/scripts/reproducibility/vae.py): MLP 784-400-(40
means, 40 log-variances), decoder 40-400-784, ReLU, Bernoulli; PyTorch's default
initialisation (`model.init='torch'`: weights and biases U(±1/√fan_in)). Larochelle's static
binarized MNIST, 50k training images. Adam with the learning rate divided by 10^(1/5) after
epochs 200 and 350 (its MultiStepLR milestones; `optim.schedule='piecewise'`). Evaluated with
the k = 200 importance-weighted bound on the 10k test images.

Not published with the script: its training config (the file it reads,
configs/base_training_config.json, is not in the repository). Here: Pythae's trainer defaults
(learning rate 1e-4, ε 1e-8) with batch 100 and 500 epochs (250k steps), the length at which
the first two milestones fall inside the run. Pythae also evaluates the epoch with the best
validation −ELBO (its trainer keeps the best model); we evaluate the last step.

    python -m vae_jax.ledger run --rows=pythae_vae
"""

from experiments.paper import _recipes
from vae_jax.configs import base_config, parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='Pythae reproducibility table (VAE)', setting='VAE 784-400-40',
                      value=89.9, metric='nll', paper_steps=250_000, others=(('Pythae', 89.78),),
                      note='Pythae\'s learning rate and epochs are not published; Pythae evaluates '
                           'its best-on-validation epoch, we the last')


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = base_config()
    c.data.name = 'binarized_mnist'
    c.model.hidden = (400,)
    c.model.latents = 40
    c.model.init = 'torch'
    c.optim.learning_rate = 1e-4
    c.optim.schedule = 'piecewise'
    c.optim.boundaries = (200 / 500, 350 / 500)
    c.optim.decay = 10 ** (-1 / 5)
    c.batch_size = 100
    c.eval.iwae_samples = 200
    return _recipes.finish(c, args.steps, PUBLISHED.paper_steps)


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
