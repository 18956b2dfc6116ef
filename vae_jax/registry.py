"""Looking up a name in one of vae_jax's registries (likelihoods, priors)."""

import importlib

from vae_jax.errors import UserError


def lookup(registry: dict, name: str, field: str):
    """`registry[name]`: the factory itself, or 'package.module:factory' imported now (an entry
    in a module of its own, or of the researcher's own package). UserError naming `field`
    and the choices for an unknown name."""
    if name not in registry:
        raise UserError(f'unknown {field} {name!r}; choose one of {", ".join(registry)}')
    entry = registry[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(':')
        return getattr(importlib.import_module(module), attr)
    return entry
