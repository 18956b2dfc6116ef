"""`Latents`: one posterior sample per example and its per-group terms, as every model's
inference returns it (`model_fns.ModelFns.infer`, `hierarchies`)."""

from typing import Optional

import flax
import jax


@flax.struct.dataclass
class Latents:
    """One posterior sample per example and its terms.

    Attributes:
      z: [b, Z] every latent, groups concatenated (Z = sum of `ModelFns.groups`).
      mean, logvar: [b, Z] the diagonal Gaussian each dimension was drawn from (before a flow).
      log_q, log_p: [b, G] log q(z_g | x, z_<g) and log p(z_g | z_>g or z_<g) of each group g
        at the sample; their sums make the importance weight.
      kl: [b, G] each group's KL term of the ELBO: analytic where there is a closed form
        (given the sample of the groups it depends on), else log_q - log_p.
      kl_per_dim: [b, Z] the analytic KL of each dimension, or None when some group has none.
    """
    z: jax.Array
    mean: jax.Array
    logvar: jax.Array
    log_q: jax.Array
    log_p: jax.Array
    kl: jax.Array
    kl_per_dim: Optional[jax.Array] = None
