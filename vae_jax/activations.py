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
models' parameters were the same bit for bit (`python benchmarks/relu_grad.py --models conv` and
`--models mlp`, 15 rotating rounds, 2026-12-04 at 00:11, a 2-core AMD EPYC VM). Since the
conv decoder's all-phase form (`upsample._upsample_conv_cpu`, 2026-12-04) the conv model's
differ by rounding: at most 3.1e-6 after 4 steps (`python benchmarks/relu_grad.py --rounds 1
--steps 2`, 13:45).
Where x <= 0 the derivative is 0 · t, so a NaN or infinite incoming gradient gives NaN there,
and a NaN pre-activation gives NaN, where `jax.nn.relu`'s derivative is 0 (a step with either
has a non-finite loss or gradient already).

`relu_minus_zero` is the same with -0.0 for its zeros: the conv decoder's (see there why).
"""

import jax
import jax.numpy as jnp


@jax.custom_jvp
def relu(x: jax.Array) -> jax.Array:
    """[...] -> [...]: max(x, 0)."""
    return jnp.maximum(x, 0)


@jax.custom_jvp
def relu_minus_zero(x: jax.Array) -> jax.Array:
    """[...] -> [...]: max(x, -0.0). `relu` but for the sign of its zeros, with the same
    derivatives; the conv decoder's ReLUs.

    XLA merges the broadcasts of equal constants to equal shapes, and XLA:CPU writes a broadcast
    that has more than one user out as an array, which YNNPACK's fused `max` then reads. The
    conv β-VAE's encoder and decoder have ReLUs on arrays of the same shapes ([64, 32, 32, 32]
    after the encoder's first layer and before the decoder's last, and so on), so its train
    step wrote 8 MiB of zeros (and smaller arrays) every step for them to share. With -0.0 as
    the decoder's zero each ReLU's fusion takes its zero as a scalar: the step writes 48.2
    million f32 elements instead of 51.1 and took 38.0 ms (36.2-40.5) against 38.3 (35.9-41.3),
    a gain within the noise (`python benchmarks/relu_grad.py --rounds 11`, its 'shared zero'
    form, 2026-12-04 at 13:40, a 2-core AMD EPYC VM); one-off alternating runs in one process
    an hour earlier gave 32.4 against 31.9 steps/s on two cores and 17.1 against 16.6 on one.
    A -0.0 where relu gives 0.0 changes no sum (x + -0.0 = x) and no product's magnitude: the
    trained parameters are the same bit for bit (`tests/test_activations.py`, and the
    benchmark).
    """
    return jnp.maximum(x, -0.0)


def _jvp_from_output(f):
    def jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        y = f(x)
        return y, t * jnp.sign(y)
    return jvp


relu.defjvp(_jvp_from_output(relu))
relu_minus_zero.defjvp(_jvp_from_output(relu_minus_zero))
