"""Protocols shared by several ledger rows (files starting with '_' are not rows).

`burda` is the MNIST setup of Burda et al. (2015) that Rainforth et al. (2018) and Pythae's
IWAE-family reproductions reuse; `finish` sets what every row sets the same way: the row's
steps (`steps=N` compresses the schedule into N steps: the burda and piecewise schedules are
defined as fractions of the run), eval and checkpoint cadence, and the test bound's k.
"""

from vae_jax.configs import base_config

BURDA_TRAIN = 59_600           # Burda et al.: the last 400 of MNIST's 60k train images validate
BURDA_EPOCHS = 3280            # 3^0 + ... + 3^7 epochs
BURDA_BATCH = 20
LAROCHELLE_TRAIN = 50_000      # static binarized MNIST: 50k train / 10k validation / 10k test


def burda(layers: int, data: str = 'dynamic'):
    """Burda et al. 2015, appendix C: one (784-200-200-50) or two (…-100-100-50) stochastic
    layers of tanh MLPs, Glorot-uniform weights, batch 20, Adam (β1 0.9, β2 0.999, ε 1e-4),
    learning rate 1e-3 · 10^(-i/7) for 3^i epochs, i = 0…7 (3,280 epochs), test bound k=5000.

    data='dynamic': MNIST's first 59,600 training images (TFDS order), binarized afresh every
    step, tested on the 10k test images; 'static': Larochelle's binarized MNIST (50k train).

    Differences from the paper's code (yburda/iwae): its 59,600 images are the first of MNIST's
    own order (TFDS shuffles); its output bias starts at the logit of the training mean (here
    zero); its Adam starts the second moment at one and uses β1 = 0.99 (here the paper's text:
    0.9, moments from zero); its encoder outputs log σ (here log σ², the same family).
    """
    c = base_config()
    if data == 'dynamic':
        c.data.name, c.data.binarize = 'mnist', 'dynamic'
        c.data.train_split = f'train[:{BURDA_TRAIN}]'
        train = BURDA_TRAIN
    else:
        c.data.name = 'binarized_mnist'
        train = LAROCHELLE_TRAIN
    c.model.name = 'hvae'
    c.model.group_latents = (50,) if layers == 1 else (100, 50)
    c.model.group_hidden = (200,) if layers == 1 else (200, 100)
    c.model.group_depth = 2
    c.model.init = 'glorot'
    c.optim.learning_rate = 1e-3
    c.optim.eps = 1e-4
    c.optim.schedule = 'burda'
    c.batch_size = BURDA_BATCH
    c.num_steps = BURDA_EPOCHS * (train // BURDA_BATCH)
    c.eval.iwae_samples = 5000
    return c


def finish(c, steps: int, paper_steps: int):
    """The row's config trained for `steps` (0: the paper's `paper_steps`), with ~25 evals of
    the test −ELBO along the way (the learning curve) and ~20 checkpoints (at most 20k apart)."""
    c.num_epochs, c.num_steps = 0.0, steps or paper_steps
    c.eval_every = max(c.num_steps // 25, 100)
    c.checkpoint_every = max(min(c.num_steps // 20, 20_000), 100)
    c.log_every = max(min(c.num_steps // 100, 1000), 10)
    c.eval.probe_train_examples = 2000
    return c
