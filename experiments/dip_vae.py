"""DIP-VAE-I and -II (Kumar et al. 2018) on procedural dSprites.

Loss -ELBO + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - 1)², C the covariance over the global batch of
the posterior means (I) or of q(z) (II). disentanglement_lib's defaults: λ_d = 10 λ_od for
DIP-VAE-I and λ_d = λ_od for DIP-VAE-II. Shared setup and metrics as experiments/beta_vae.py.

    python launch.py --config=experiments/dip_vae.py --workdir=runs/dip_i
    python launch.py --config=experiments/dip_vae.py:type=ii --workdir=runs/dip_ii
    python launch.py --config=experiments/dip_vae.py:quick --workdir=runs/dip_quick

Arguments (checked against `ARGS`): `quick`, `type=i|ii` (default i), `lambda_od=L` (default
10), `steps=N` (default 0: 300k, or 600 with `quick`); for the sweep `seeds=N` (default 5).

Runtime and expected result: the full 300k steps take about 11 hours of training on a 2-core
CPU. The quick run (type i, λ_od = 10, λ_d = 100) (measured: seed 0, 2-core AMD EPYC VM in a
slow hour, no other job, 2026-12-03; the README's family table) takes 2 min 31 s in all,
metrics included, and ends at -ELBO 108.05 nats (KL 22.51) on 1,000 of the 10,000 held-out
factor combinations, 10 of 10 units active; BetaVAE 0.722, FactorVAE 0.534, MIG 0.021, DCI D 0.025, SAP 0.017.
"""

from vae_jax.configs import DSPRITES_ARGS, dsprites_config, parse_arg
from vae_jax.sweep import product, sweep, zip_

ARGS = dict(DSPRITES_ARGS, type=('i', 'ii'), lambda_od=10.0, seeds=5)
LAMBDA_D_PER_LAMBDA_OD = {'i': 10.0, 'ii': 1.0}  # disentanglement_lib's defaults


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = dsprites_config(args.quick, args.steps)
    c.objective.name = 'dip_vae'
    c.objective.dip_type = args.type
    c.objective.lambda_od = args.lambda_od
    c.objective.lambda_d = args.lambda_od * LAMBDA_D_PER_LAMBDA_OD[args.type]
    return c


def get_sweep(arg=None):
    """disentanglement_lib's DIP-VAE study: λ_od ∈ {1, 2, 5, 10, 20, 50} (λ_d tied to it as in
    `get_config`) × `seeds=N` seeds (default 5); `type=ii` sweeps DIP-VAE-II.

        python launch.py --config=experiments/dip_vae.py:type=ii --sweep --workdir=runs/dip_ii
    """
    args = parse_arg(arg, __file__, **ARGS)
    factor = LAMBDA_D_PER_LAMBDA_OD[args.type]
    lambdas = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    return product(zip_(sweep('objective.lambda_od', lambdas),
                        sweep('objective.lambda_d', [factor * l for l in lambdas])),
                   sweep('seed', list(range(args.seeds))))
