"""The points one training loop trains: one run (P = 1, not vmapped) or a vmapped sweep group.

A vmapped group stacks the points' train states along a leading axis of P and `jax.vmap`s the
train step over it (`steps.pmapped_steps(vmapped=True)`), so one compiled step trains every
point. The points may differ only in the scalar hyperparameters the step takes as data
(`steps.hparam_names`) and in their seeds. A single run is not vmapped: its compiled program is the
plain pmapped step. The helpers here give the loop one view of both.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import steps, workdir as workdir_lib
from vae_jax.errors import UserError

def vmappable(config) -> frozenset:
    """The fields in which the points of a vmapped group may differ: the step's traced
    hyperparameters (`steps.hparam_names`, which the objective declares) and the seed."""
    return frozenset(steps.hparam_names(config.objective)) | {'seed'}


def varying_hparams(configs: Sequence) -> list[str]:
    """The hyperparameters in which `configs` differ; UserError if they differ in anything
    else."""
    flat = [workdir_lib.flatten(c) for c in configs]
    differing = sorted(k for k in flat[0] if any(f.get(k) != flat[0][k] for f in flat[1:]))
    allowed = vmappable(configs[0])
    bad = [k for k in differing if k not in allowed]
    if bad:
        raise UserError(f'vmapped sweep points may differ only in {", ".join(sorted(allowed))}; '
                        f'these differ in {", ".join(bad)}: run the sweep without --sweep_vmap')
    return [k for k in differing if k != 'seed']


def stack(trees: Sequence) -> Any:
    """[tree] -> one tree of stacked leaves [P, ...], with the first tree's static fields."""
    def stack_leaves(xs):
        if jax.dtypes.issubdtype(getattr(xs[0], 'dtype', None), jax.dtypes.prng_key):
            return jnp.stack(xs)  # typed keys have no numpy form
        return np.stack([np.asarray(x) for x in xs])
    leaves = [jax.tree.leaves(t) for t in trees]
    return jax.tree.unflatten(jax.tree.structure(trees[0]),
                              [stack_leaves(xs) for xs in zip(*leaves)])


def unstack(tree: Any, p: int) -> Any:
    return jax.tree.map(lambda x: x[p], tree)


class Points:
    """P points trained together (`vmapped`) or one run (P = 1, `vmapped` False)."""

    def __init__(self, configs: Sequence, vmapped: bool):
        if not vmapped and len(configs) != 1:
            raise ValueError('several points are trained vmapped')
        if vmapped:
            varying_hparams(configs)
        self.configs, self.vmapped = list(configs), vmapped

    def __len__(self) -> int:
        return len(self.configs)

    def join(self, trees: Sequence) -> Any:
        """One tree per point -> the loop's tree (stacked when vmapped)."""
        return stack(trees) if self.vmapped else trees[0]

    def split(self, tree: Any) -> list:
        """The loop's tree -> one tree per point."""
        return [unstack(tree, p) for p in range(len(self))] if self.vmapped else [tree]

    def join_batches(self, batches: Sequence[dict]) -> dict:
        """Per-point batches [devices, b, ...] -> [devices, P, b, ...] when vmapped."""
        if not self.vmapped:
            return batches[0]
        return {k: np.stack([b[k] for b in batches], axis=1) for k in batches[0]}

    def hparams(self) -> dict[str, jax.Array]:
        """The step's `hparams`: {name: []} for a run, {name: [P]} for a vmapped group."""
        per_point = [steps.hyperparams(c) for c in self.configs]
        return per_point[0] if not self.vmapped else {
            k: jnp.stack([h[k] for h in per_point]) for k in per_point[0]}
