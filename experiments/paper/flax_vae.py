"""flax's examples/vae: the VAE it trains, and the test −ELBO it reports after 10 epochs
(≈ 104).

Model: MLP encoder 784-500-(20 means, 20 log-variances), decoder 20-500-784 Bernoulli logits,
ReLU, flax's default initialisation (LeCun normal weights, zero biases). Data: TFDS
`binarized_mnist` (Larochelle's static binarization), trained on its 50,000-image train split,
evaluated on the 10,000-image test split. Adam 1e-3, batch 128, 10 epochs (3,900 steps: the
last partial batch of each epoch is dropped). The number is the single-sample −ELBO on the test
split (flax's README: "ELBO ≈ 104" after 10 epochs; its loss is summed over pixels and averaged
over the batch, as ours).

    python -m vae_jax.ledger run --rows=flax_vae --arg=seeds=3
"""

from experiments import vae
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='flax examples/vae (README)', setting='VAE 784-500-20, 10 epochs',
                      value=104.0, metric='neg_elbo', paper_steps=3900,
                      note='flax reports "≈ 104" (one run, no seeds)')


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = vae.build(epochs=10)
    if args.steps:
        c.num_epochs, c.num_steps = 0.0, args.steps
    c.eval.iwae_samples = 1000  # not the row's number; what --mode=eval would compute
    return c


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
