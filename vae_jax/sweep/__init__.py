"""Hyperparameter sweeps declared next to the config (`get_sweep(arg)` in an experiment file).

    from vae_jax.sweep import product, sweep
    def get_sweep(arg=None):
        return product(sweep('objective.beta', [1, 4, 16]), sweep('seed', [0, 1, 2]))

    python launch.py --config=experiments/toy2d.py --sweep --workdir=runs/sweep    # every point
    python launch.py --config=experiments/toy2d.py --sweep_index=3 --workdir=runs/sweep  # one
    python -m vae_jax.sweep summarize runs/sweep   # summary.csv, summary.md, plots/*.png

In a notebook: `run_sweep(config, load_sweep('experiments/toy2d.py'), 'runs/sweep')`, then
`summarize('runs/sweep')`.
"""

from vae_jax.sweep.define import (Point, chain, expand, format_value, load_sweep, product,
                                  split_config_spec, sweep, zip_)
from vae_jax.sweep.runner import (Outcome, apply_overrides, format_outcomes, read_status,
                                  run_sweep)
from vae_jax.sweep.rows import collect
from vae_jax.sweep.summary import summarize

__all__ = [
    'Outcome', 'Point', 'apply_overrides', 'chain', 'collect', 'expand', 'format_outcomes',
    'format_value', 'load_sweep', 'product', 'read_status', 'run_sweep', 'split_config_spec',
    'summarize', 'sweep', 'zip_',
]
