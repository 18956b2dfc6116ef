"""Activations whose derivatives vae_jax computes its own way, for XLA:CPU's sake.

`relu` is `jax.nn.relu` (the same values, and the same derivatives: 1 where x > 0, else 0)
with its derivative taken from its output, as a product with `sign(relu(x))`:

- the pre-activation is not kept for the backward pass, so XLA fuses a convolution's bias and
  ReLU into the convolution's own fusion and writes the layer's output once;
- the backward pass multiplies by the sign instead of selecting against an array of zeros.
  XLA:CPU runs a fusion that also transposes (the conv encoder's input gradients leave their
  space-to-depth layout there) several times slower when it holds a broadcast constant.

The conv β-VAE's compiled train step then writes 54.2 million f32 elements per step instead of
61.5 and takes 32.3 ms instead of 34.6 (1.07×; 1.08× in an earlier one-off run); the main
job's MLP step runs as many kernels and writes as many elements as with `jax.nn.relu`, and both
models' parameters are the same bit for bit (`python benchmarks/relu_grad.py --models conv` and
`--models mlp`, 15 rotating rounds, 2026-12-04 at 00:11, a 2-core AMD EPYC VM).
Where x <= 0 the derivative is 0 · t, so a NaN or infinite incoming gradient gives NaN there,
and a NaN pre-activation gives NaN, where `jax.nn.relu`'s derivative is 0 (a step with either
has a non-finite loss or gradient already).
"""

import jax
import jax.numpy as jnp


@jax.custom_jvp
def relu(x: jax.Array) -> jax.Array:
    """[...] -> [...]: max(x, 0)."""
    return jnp.maximum(x, 0)


@relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = relu(x)
    return y, t * jnp.sign(y)
