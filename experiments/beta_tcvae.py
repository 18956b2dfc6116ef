"""β-TCVAE (Chen et al. 2018) on procedural dSprites.

Loss -ELBO + (β - 1) TC, the total correlation of q(z) estimated on each global batch of 64
(vae_jax.regularizers.total_correlation). Shared setup and metrics as experiments/beta_vae.py.

    python launch.py --config=experiments/beta_tcvae.py --workdir=runs/beta_tcvae
    python launch.py --config=experiments/beta_tcvae.py:quick --workdir=runs/beta_tcvae_quick

Arguments: `quick`, `beta=B` (default 6), `steps=N`.
"""

from vae_jax.configs import dsprites_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg)
    c = dsprites_config(args)
    c.objective.name = 'beta_tcvae'
    c.objective.beta = float(args.get('beta', 6.0))
    return c
