"""VampPrior (Tomczak & Welling 2018): p(z) = (1/K) Σ_k q(z | u_k) with K = 500 learned
pseudo-inputs, on static binarized MNIST.

The paper's MNIST setup (§5, appendix; github.com/jmtomczak/vae_vampprior, model 'vae'):
- 40 latents; encoder and decoder MLPs of two 300-unit *gated* dense layers
  (h = Dense(h) ⊙ sigmoid(Dense'(h))), the encoder's log-variance clipped to [-6, 2];
  `model.encoder='gated_mlp'`, `model.hidden=(300, 300)`;
- K = 500 pseudo-inputs, parameters of the image's shape through a hard tanh to [0, 1],
  initialised ~ N(0.05, 0.01²);
- Adam, learning rate 5e-4, batch 100, KL warm-up over the first 100 epochs (β rises 0 -> 1),
  up to 2,000 epochs with early stopping on the validation bound (50 epochs of patience);
- test log-likelihood from the importance-weighted bound with 5,000 samples.
Published: -log p(x) = 85.57 for this model (their Table 2). Differences here: no early stopping (a fixed number of epochs); plain Adam
(their code normalises each gradient tensor before Adam, "AdamNormGrad").

    python launch.py --config=experiments/vampprior.py --workdir=runs/vampprior
    python launch.py --config=experiments/vampprior.py:quick --workdir=runs/vampprior_quick
    python launch.py --mode=eval --workdir=runs/vampprior_quick

Arguments (checked against `ARGS`): `epochs=E` (default 2000), `steps=N` (overrides epochs),
`components=K` (default 500), `prior=vampprior|standard_normal|gaussian_mixture` (the paper's
comparison), `quick` (3,000 steps with the warm-up over the first 1,000 and a 1,000-sample
bound on 1,000 test images: a few minutes on a 2-core CPU).
"""

from vae_jax.configs import base_config, parse_arg

ARGS = dict(epochs=2000.0, steps=0, components=500,
            prior=('vampprior', 'standard_normal', 'gaussian_mixture'), quick=False)
TRAIN_EXAMPLES = 50_000  # Larochelle's static binarized MNIST: 50k / 10k validation / 10k test


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = base_config()
    c.data.name = 'binarized_mnist'
    c.model.encoder = 'gated_mlp'
    c.model.hidden = (300, 300)
    c.model.latents = 40
    c.model.prior = args.prior
    c.model.prior_components = args.components
    c.optim.learning_rate = 5e-4
    c.batch_size = 100
    c.num_epochs = args.epochs
    c.objective.kl_warmup_steps = 100 * TRAIN_EXAMPLES // c.batch_size
    c.log_every = 500
    c.checkpoint_every = 5000
    if args.steps:
        c.num_epochs, c.num_steps = 0.0, args.steps
        c.objective.kl_warmup_steps = min(c.objective.kl_warmup_steps, args.steps // 3)
    if args.quick:
        c.num_epochs, c.num_steps = 0.0, 3000
        c.objective.kl_warmup_steps = 1000
        c.eval.iwae_samples, c.eval.iwae_examples = 1000, 1000
        c.eval.probe_train_examples = 2000
    return c
