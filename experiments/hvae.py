"""Two stochastic layers (Burda et al. 2015, appendix C; Table 1, "2 stochastic layers").

x -> 200-200 tanh -> z1 (100) -> 100-100 tanh -> z2 (50) for inference, and
z2 ~ N(0, I) -> 100-100 tanh -> z1 -> 200-200 tanh -> Bernoulli x for generation, every
conditional a diagonal Gaussian (vae_jax/hierarchies.py). Trained with the ELBO (`k=1`) or the
IWAE objective with k samples; the paper's protocol: MNIST binarized dynamically, batch 20,
Adam (β1 0.9, β2 0.999, ε 1e-4), 3,280 epochs in 8 stages of 3^i epochs at learning rate
1e-3 · 10^(-i/7) (`optim.schedule='burda'`), test bound with k = 5,000. Published -log p(x):
VAE 85.33, IWAE k=5 83.89, IWAE k=50 82.90 (their Table 1).

    python launch.py --config=experiments/hvae.py:k=5 --workdir=runs/hvae_k5
    python launch.py --config=experiments/hvae.py:quick --workdir=runs/hvae_quick
    python launch.py --mode=eval --workdir=runs/hvae_quick

Arguments (checked against `ARGS`): `k=K` (default 1: the ELBO), `epochs=E` (default 3280),
`steps=N` (overrides epochs), `data=dynamic|static` (dynamic: MNIST re-binarized every step, the
paper's; static: Larochelle's binarized MNIST), `quick` (3,000 steps at batch 100 with a
1,000-sample bound on 1,000 test images: a few minutes on a 2-core CPU).
"""

from vae_jax.configs import base_config, parse_arg

ARGS = dict(k=1, epochs=3280.0, steps=0, data=('dynamic', 'static'), quick=False)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = base_config()
    if args.data == 'dynamic':
        c.data.name, c.data.binarize = 'mnist', 'dynamic'
    else:
        c.data.name = 'binarized_mnist'
    c.model.name = 'hvae'
    c.model.group_latents = (100, 50)
    c.model.group_hidden = (200, 100)
    c.model.group_depth = 2
    if args.k > 1:
        c.objective.name, c.objective.num_samples = 'iwae', args.k
    c.optim.learning_rate = 1e-3
    c.optim.eps = 1e-4
    c.optim.schedule = 'burda'
    c.batch_size = 20
    c.num_epochs = args.epochs
    c.log_every = 1000
    c.checkpoint_every = 10_000
    if args.steps:
        c.num_epochs, c.num_steps = 0.0, args.steps
    if args.quick:
        c.num_epochs, c.num_steps, c.batch_size = 0.0, 3000, 100
        c.optim.schedule = 'constant'
        c.eval.iwae_samples, c.eval.iwae_examples = 1000, 1000
        c.eval.probe_train_examples = 2000
    return c
