"""β-VAE (Higgins et al. 2017) on procedural dSprites, disentanglement_lib's protocol.

The shared setup (`vae_jax.configs.dsprites_config`): the Burgess et al. (2018) conv net with 10
latents, Bernoulli likelihood, batch 64, Adam 1e-4, 300k steps; the loss is -log p(x|z) + β KL.
At the end of training the five disentanglement metrics (BetaVAE, FactorVAE, MIG, DCI, SAP) are
computed on the posterior means and written to results/ and TensorBoard.

    python launch.py --config=experiments/beta_vae.py --workdir=runs/beta_vae
    python launch.py --config=experiments/beta_vae.py:quick --workdir=runs/beta_quick
    python launch.py --config=experiments/beta_vae.py:quick,beta=16 --workdir=runs/beta16
    python launch.py --config=experiments/beta_vae.py --config.objective.beta=8 --workdir=...

Arguments (comma separated, checked against `ARGS`): `quick` (600 steps, Adam 5e-4, metrics
on a tenth of the protocol's sample sizes), `beta=B` (default 4), `steps=N` (default 0: 300k,
or 600 with `quick`); for the sweep `betas=B1/B2/...` (default 1/2/4/6/8/16) and `seeds=N`
(default 5).

Runtime: the full 300k steps take about 6 hours on a 2-core CPU (13.8 steps/s measured by
benchmarks/train_speed.py on a 2-core Intel Xeon, 2026-12-02 afternoon). The quick run
(seed 0, 2-core AMD EPYC VM, no other job, 2026-12-04 at 19:25; median of 3 by
benchmarks/end_to_end.py): 54.5 s in all (52.3-62.6 s), 17.3 s of it training and 32.2 s the
metrics; -ELBO 115.10 nats on 1,000 of the 10,000 held-out factor combinations
(`data.registry`); the README's family table (one more run, 49.6 s): KL 13.05, BetaVAE 0.710,
FactorVAE 0.450, MIG 0.030, DCI D 0.033, SAP 0.028, with vae_jax's CPU weight-gradient kernel
(`vae_jax.weight_gradient`; before it, in slower hours, 1 min 40 s to 2 min 9 s, -ELBO 112.92
to 114.42 as the decoder's CPU forms changed the rounding). These are with the family's XLA flags
(`config.xla_cpu_flags`, `vae_jax.xla_setup.BETA_VAE_CPU_FLAGS`); `--config.xla_cpu_flags=`
runs without them. The README's
"Disentanglement" section has the β comparison and the other objectives.
"""

from vae_jax.configs import DSPRITES_ARGS, dsprites_config, parse_arg
from vae_jax.errors import UserError
from vae_jax.sweep import product, sweep

ARGS = dict(DSPRITES_ARGS, beta=4.0, betas='1/2/4/6/8/16', seeds=5)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = dsprites_config(args.quick, args.steps)
    c.objective.beta = args.beta
    return c


def get_sweep(arg=None):
    """disentanglement_lib's β-VAE study: β ∈ {1, 2, 4, 6, 8, 16} (or `betas=1/4/16`) × `seeds=N`
    seeds (default 5). The β comparison of the README:

        python launch.py --config=experiments/beta_vae.py:quick,betas=1/4/16,seeds=1 --sweep \
            --workdir=runs/beta_quick_sweep
        python -m vae_jax.sweep summarize runs/beta_quick_sweep
    """
    args = parse_arg(arg, __file__, **ARGS)
    return product(sweep('objective.beta', _floats('betas', args.betas)),
                   sweep('seed', list(range(args.seeds))))


def _floats(name: str, text: str) -> list[float]:
    """'1/4/16' -> [1.0, 4.0, 16.0]; UserError naming config argument `name` otherwise."""
    try:
        return [float(b) for b in text.split('/')]
    except ValueError:
        raise UserError(f'config argument {name}={text!r} must be numbers separated by "/", '
                        f'e.g. {name}=1/4/16') from None
