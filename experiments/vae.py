"""VAE (Kingma & Welling 2014) with flax's examples/vae setup: MLP 784-500-20, Bernoulli.

Static binarized MNIST (Larochelle), Adam 1e-3, batch 128, 30 epochs.

    python launch.py --config=experiments/vae.py --workdir=runs/vae
    python launch.py --config=experiments/vae.py:epochs=10 --workdir=runs/vae10

Arguments (checked against `ARGS`): `epochs=E` (default 30); for the sweep `seeds=N` (default
3).

Runtime and result, measured on a quiet 2-core CPU (README, "Measured"): 10 epochs (3,900
steps) take 22.3 s in all on a 2-core AMD EPYC VM with this config's 10 steps per call (24.3 s
with one; median of 5, benchmarks/end_to_end.py --steps_per_execution=1,10 --rounds=5,
2026-12-03; medians from 22.0 to 29.3 s in five later runs that day, by the VM's hour) and end
at test -ELBO 103.20 nats (103.15 with one step per call, which rounds differently; flax's
example reports ≈ 104); 30 epochs ended at 100.85 (one step per call, before the in-place
optimizer update).

Sweep (get_sweep): latent dimensions {2, 5, 10, 20, 50} × seeds {0, 1, 2} (`seeds=N`), the
latent-size comparison of Kingma & Welling (2014, figure 2); 15 points, about 15 minutes with
`:epochs=10`:

    python launch.py --config=experiments/vae.py:epochs=10 --sweep --workdir=runs/vae_latents
    python -m vae_jax.sweep summarize runs/vae_latents
"""

from vae_jax.configs import base_config, parse_arg
from vae_jax.sweep import product, sweep

ARGS = dict(epochs=30.0, seeds=3)


def get_config(arg=None):
    c = build(epochs=parse_arg(arg, __file__, **ARGS).epochs)
    # 10 steps per call of the compiled step: the 10-epoch job's steps take 17.8 s instead of
    # 19.4 (benchmarks/steps_per_execution.py); a call never crosses a log, eval or checkpoint.
    c.steps_per_execution = 10
    return c


def build(epochs: float):
    """The flax examples/vae setup trained for `epochs`; experiments/iwae.py starts from it."""
    c = base_config()
    c.data.name = 'binarized_mnist'
    c.model.encoder = 'mlp'
    c.model.hidden = (500,)
    c.model.latents = 20
    c.model.likelihood = 'bernoulli'
    c.optim.learning_rate = 1e-3
    c.batch_size = 128
    c.num_epochs = epochs
    c.log_every = 200
    c.checkpoint_every = 2000
    return c


def get_sweep(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    return product(sweep('model.latents', [2, 5, 10, 20, 50]), sweep('seed', range(args.seeds)))
