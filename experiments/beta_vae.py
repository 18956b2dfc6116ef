"""β-VAE (Higgins et al. 2017) on procedural dSprites, disentanglement_lib's protocol.

The shared setup (`vae_jax.configs.dsprites_config`): the Burgess et al. (2018) conv net with 10
latents, Bernoulli likelihood, batch 64, Adam 1e-4, 300k steps; the loss is -log p(x|z) + β KL.
At the end of training the five disentanglement metrics (BetaVAE, FactorVAE, MIG, DCI, SAP) are
computed on the posterior means and written to results/ and TensorBoard.

    python launch.py --config=experiments/beta_vae.py --workdir=runs/beta_vae
    python launch.py --config=experiments/beta_vae.py:quick --workdir=runs/beta_quick
    python launch.py --config=experiments/beta_vae.py:quick,beta=16 --workdir=runs/beta16
    python launch.py --config=experiments/beta_vae.py --config.objective.beta=8 --workdir=...

Arguments (comma separated): `quick` (600 steps, Adam 5e-4, metrics on a tenth of the
protocol's sample sizes), `beta=B` (default 4), `steps=N`.

Runtime: the full 300k steps take about 11 hours on a 2-core CPU (7.5 steps/s measured by
benchmarks/train_speed.py). See the README's "Disentanglement" section for the measured quick
runs and the β comparison.
"""

from vae_jax.configs import dsprites_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg)
    c = dsprites_config(args)
    c.objective.beta = float(args.get('beta', 4.0))
    return c
