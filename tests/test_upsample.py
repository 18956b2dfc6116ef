"""vae_jax.upsample: every form of the ×2 transposed convolution against a numpy loop, values,
gradients and forward-mode derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import upsample


def _upsample_reference(x, w):
    """numpy loop: out[2i - (k/2 - 1) + t] += x[i] w[t] along each spatial axis (PyTorch's
    ConvTranspose2d(k, 2, k/2 - 1))."""
    b, h, wd, _ = x.shape
    k, p = w.shape[0], w.shape[0] // 2 - 1
    out = np.zeros((b, 2 * h + k, 2 * wd + k, w.shape[-1]))
    for i in range(h):
        for j in range(wd):
            for t in range(k):
                for u in range(k):
                    out[:, 2 * i + t, 2 * j + u] += x[:, i, j] @ w[t, u]
    return out[:, p:p + 2 * h, p:p + 2 * wd]


UPSAMPLE_FORMS = (upsample._upsample_conv_phases, upsample._upsample_conv_blocks,
                  upsample._upsample_conv_dilated, upsample._upsample_conv_allphase,
                  upsample._upsample_conv_cpu)


@pytest.mark.parametrize('k,c_out', [(2, 2), (4, 2), (4, 5), (6, 1)])
def test_upsample_conv_is_the_transposed_convolution(k, c_out):
    """Every formulation (per-phase convolutions, all phases in one convolution, matmul +
    overlap-add, and the CPU form's own derivatives: CPU; zero-dilated input: elsewhere) gives
    the loop reference's values, and the same gradients and forward-mode derivatives as the
    others; upsample_conv picks the blocks below BLOCKS_CHANNELS output channels."""
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 5, 4, 3))
    w = rng.normal(size=(k, k, 3, c_out))
    xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    ref = _upsample_reference(x, w)
    for f in UPSAMPLE_FORMS:
        np.testing.assert_allclose(jax.jit(f)(xj, wj), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(upsample.upsample_conv(xj, wj), ref, rtol=1e-5, atol=1e-5)
    grads = [jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))(xj, wj)
             for f in UPSAMPLE_FORMS]
    for other in grads[1:]:
        for a, b in zip(grads[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    tangents = (jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                jnp.asarray(rng.normal(size=w.shape), jnp.float32))
    jvps = [jax.jvp(f, (xj, wj), tangents)[1] for f in UPSAMPLE_FORMS]
    for other in jvps[1:]:
        np.testing.assert_allclose(jvps[0], other, rtol=1e-4, atol=1e-4)
    chosen = (upsample._upsample_conv_blocks if c_out < upsample.BLOCKS_CHANNELS
              else upsample._upsample_conv_cpu)
    np.testing.assert_array_equal(jax.jit(upsample.upsample_conv)(xj, wj),
                                  jax.jit(chosen)(xj, wj))


def test_upsample_conv_cpu_reverse_mode_needs_no_dilated_or_phase_slices():
    """The CPU form's input gradient is one stride-2 convolution of the output gradient, and a
    gradient for the kernel alone computes no input gradient at all."""
    x, w = jnp.ones((2, 4, 4, 3)), jnp.ones((4, 4, 3, 5))
    loss = lambda x, w: jnp.sum(jnp.sin(upsample._upsample_conv_cpu(x, w)))  # noqa: E731
    convs = lambda jaxpr: [e.params for e in jaxpr.eqns  # noqa: E731
                           if e.primitive.name == 'conv_general_dilated']
    # With respect to x: the forward pass's one convolution and the input gradient's one.
    x_convs = convs(jax.make_jaxpr(jax.grad(loss))(x, w).jaxpr)
    assert len(x_convs) == 2
    assert [p['window_strides'] for p in x_convs] == [(1, 1), (2, 2)]
    assert all(p['lhs_dilation'] == (1, 1) for p in x_convs)
    # With respect to the kernel: the forward pass and four per-phase weight gradients.
    w_convs = convs(jax.make_jaxpr(jax.grad(loss, argnums=1))(x, w).jaxpr)
    assert len(w_convs) == 5
    assert all(p['window_strides'] == (1, 1) and p['lhs_dilation'] == (1, 1) for p in w_convs)


def test_upsample_conv_refuses_odd_kernels():
    with pytest.raises(ValueError, match='even size'):
        upsample.upsample_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)))
