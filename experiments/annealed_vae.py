"""β-VAE with controlled capacity (Burgess et al. 2018) on procedural dSprites.

Loss -log p(x|z) + γ |KL - C|, with C raised linearly from 0 to `capacity_max` nats over
`capacity_steps` (disentanglement_lib's AnnealedVAE: γ = 1000, C 0 → 25 nats over 100k steps).
Shared setup and metrics as experiments/beta_vae.py.

    python launch.py --config=experiments/annealed_vae.py --workdir=runs/annealed
    python launch.py --config=experiments/annealed_vae.py:quick --workdir=runs/annealed_quick

Arguments: `quick` (600 steps; C reaches its maximum at step 400), `c_max=C`, `gamma=G`,
`steps=N`.
"""

from vae_jax.configs import dsprites_config, parse_arg
from vae_jax.sweep import product, sweep


def get_config(arg=None):
    args = parse_arg(arg)
    c = dsprites_config(args)
    c.objective.name = 'capacity'
    c.objective.gamma = float(args.get('gamma', 1000.0))
    c.objective.capacity_max = float(args.get('c_max', 25.0))
    c.objective.capacity_steps = 400 if args.get('quick') else 100_000
    return c


def get_sweep(arg=None):
    """disentanglement_lib's AnnealedVAE study: C_max ∈ {5, 10, 25, 50, 75, 100} nats × `seeds=N` seeds (default 5).

        python launch.py --config=experiments/annealed_vae.py --sweep --workdir=runs/annealed_vae_sweep
    """
    seeds = int(parse_arg(arg).get('seeds', 5))
    return product(sweep('objective.capacity_max', [5.0, 10.0, 25.0, 50.0, 75.0, 100.0]), sweep('seed', list(range(seeds))))
