"""β-VAE with controlled capacity (Burgess et al. 2018) on procedural dSprites.

Loss -log p(x|z) + γ |KL - C|, with C raised linearly from 0 to `capacity_max` nats over
`capacity_steps` (disentanglement_lib's AnnealedVAE: γ = 1000, C 0 → 25 nats over 100k steps).
Shared setup and metrics as experiments/beta_vae.py.

    python launch.py --config=experiments/annealed_vae.py --workdir=runs/annealed
    python launch.py --config=experiments/annealed_vae.py:quick --workdir=runs/annealed_quick

Arguments (checked against `ARGS`): `quick` (600 steps; C reaches its maximum at step 400),
`c_max=C` (default 25), `gamma=G` (default 1000), `steps=N` (default 0: 300k, or 600 with
`quick`); for the sweep `seeds=N` (default 5).

Runtime and expected result: the full 300k steps take about 11 hours of training on a 2-core
CPU. The quick run (measured: seed 0, 2-core AMD EPYC VM in a slow hour, no other job,
2026-12-03; the README's family table) takes 2 min 25 s in all, metrics included, and ends at
-ELBO 217.66 nats (KL 28.55) on 1,000 of the 10,000 held-out factor combinations, 10 of 10
units active; BetaVAE 0.838, FactorVAE 0.640, MIG 0.066, DCI D 0.096, SAP 0.025. The -ELBO
is high because γ = 1000 holds the KL near C, which is still rising over most of 600 steps, at
the cost of reconstruction.
"""

from vae_jax.configs import DSPRITES_ARGS, dsprites_config, parse_arg
from vae_jax.sweep import product, sweep

ARGS = dict(DSPRITES_ARGS, c_max=25.0, gamma=1000.0, seeds=5)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = dsprites_config(args.quick, args.steps)
    c.objective.name = 'capacity'
    c.objective.gamma = args.gamma
    c.objective.capacity_max = args.c_max
    c.objective.capacity_steps = 400 if args.quick else 100_000
    return c


def get_sweep(arg=None):
    """disentanglement_lib's AnnealedVAE study: C_max ∈ {5, 10, 25, 50, 75, 100} nats × `seeds=N` seeds (default 5).

        python launch.py --config=experiments/annealed_vae.py --sweep --workdir=runs/annealed_vae_sweep
    """
    seeds = parse_arg(arg, __file__, **ARGS).seeds
    return product(sweep('objective.capacity_max', [5.0, 10.0, 25.0, 50.0, 75.0, 100.0]), sweep('seed', list(range(seeds))))
