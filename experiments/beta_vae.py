"""β-VAE (Higgins et al. 2017) on procedural dSprites with the Burgess et al. (2018) conv net.

Encoder: 4 conv layers 32-32-64-64 (4×4, stride 2), dense 256, 10 latents; the decoder
mirrors it (sub-pixel upsampling, see vae_jax/models.py); Bernoulli likelihood. Training
follows disentanglement_lib: β=4, batch 64, Adam 1e-4, 300k steps.

    python launch.py --config=experiments/beta_vae.py --workdir=runs/beta_vae
    python launch.py --config=experiments/beta_vae.py:quick --workdir=runs/beta_quick
    python launch.py --config=experiments/beta_vae.py:beta=8 --workdir=runs/beta8
    python launch.py --config=experiments/beta_vae.py --config.objective.beta=8 --workdir=...

Arguments (comma separated): `quick` (600 steps, Adam 5e-4, small evals: ≤ 3 minutes on a
2-core CPU and still writes metrics, a checkpoint and images), `beta=B`, `steps=N`.

Runtime: the full 300k steps take about 11 hours on a 2-core CPU (7.5 steps/s measured by
benchmarks/train_speed.py). Expected result: reconstructions of dSprites and traversals in
which position, scale and shape separate into different latents (disentanglement metrics are
not computed yet). The quick run (measured, seed 0): 2 min 27 s on 2 busy cores, test -ELBO
86.1 nats, reconstructions with the right position and size, shapes still blurred.
"""

from vae_jax.configs import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg)
    c = base_config()
    c.data.name = 'dsprites'
    c.model.encoder = 'conv'
    c.model.conv_channels = (32, 32, 64, 64)
    c.model.kernel = 4
    c.model.dense = 256
    c.model.latents = 10
    c.model.likelihood = 'bernoulli'
    c.objective.beta = float(args.get('beta', 4.0))
    c.optim.learning_rate = 1e-4
    c.batch_size = 64
    c.num_steps = int(args.get('steps', 300_000))
    c.eval_every = 10_000
    c.checkpoint_every = 10_000
    c.log_every = 500
    c.eval_batch_size = 500
    c.eval_examples = 10_000
    if args.get('quick'):
        c.num_steps = int(args.get('steps', 600))
        c.optim.learning_rate = 5e-4
        c.eval_every = c.num_steps
        c.checkpoint_every = c.num_steps // 2
        c.log_every = 100
        c.eval_examples = 1000
    return c
