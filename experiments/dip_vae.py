"""DIP-VAE-I and -II (Kumar et al. 2018) on procedural dSprites.

Loss -ELBO + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - 1)², C the covariance over the global batch of
the posterior means (I) or of q(z) (II). disentanglement_lib's defaults: λ_d = 10 λ_od for
DIP-VAE-I and λ_d = λ_od for DIP-VAE-II. Shared setup and metrics as experiments/beta_vae.py.

    python launch.py --config=experiments/dip_vae.py --workdir=runs/dip_i
    python launch.py --config=experiments/dip_vae.py:type=ii --workdir=runs/dip_ii
    python launch.py --config=experiments/dip_vae.py:quick --workdir=runs/dip_quick

Arguments: `quick`, `type=i|ii` (default i), `lambda_od=L` (default 10), `steps=N`.
"""

from vae_jax.configs import dsprites_config, parse_arg
from vae_jax.sweep import product, sweep, zip_


def get_config(arg=None):
    args = parse_arg(arg)
    c = dsprites_config(args)
    c.objective.name = 'dip_vae'
    c.objective.dip_type = str(args.get('type', 'i'))
    c.objective.lambda_od = float(args.get('lambda_od', 10.0))
    c.objective.lambda_d = c.objective.lambda_od * (10.0 if c.objective.dip_type == 'i' else 1.0)
    return c


def get_sweep(arg=None):
    """disentanglement_lib's DIP-VAE study: λ_od ∈ {1, 2, 5, 10, 20, 50} (λ_d tied to it as in
    `get_config`) × `seeds=N` seeds (default 5); `type=ii` sweeps DIP-VAE-II.

        python launch.py --config=experiments/dip_vae.py:type=ii --sweep --workdir=runs/dip_ii
    """
    args = parse_arg(arg)
    factor = 10.0 if args.get('type', 'i') == 'i' else 1.0
    lambdas = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    return product(zip_(sweep('objective.lambda_od', lambdas),
                        sweep('objective.lambda_d', [factor * l for l in lambdas])),
                   sweep('seed', list(range(int(args.get('seeds', 5))))))
