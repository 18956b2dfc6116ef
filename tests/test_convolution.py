"""vae_jax.convolution: the formulations of nn.Conv against lax's, values and derivatives."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import convolution

DN = ('NHWC', 'HWIO', 'NHWC')


def _loss(conv, stride, pads):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), pads, dimension_numbers=DN)))


@pytest.mark.parametrize('shape,kernel,stride,pads', [
    ((2, 16, 16, 3), 4, 2, [(1, 2), (1, 2)]),
    ((2, 16, 16, 5), 4, 2, [(1, 1), (1, 1)]),  # 4+ channels: the forward pass is lax's
    ((2, 7, 9, 2), 4, 2, [(1, 2), (1, 2)]),
    ((1, 12, 12, 2), 6, 2, [(2, 2), (2, 2)]),
    ((2, 12, 12, 2), 6, 3, [(2, 3), (1, 2)]),
    ((2, 8, 8, 3), 3, 1, 'SAME'),     # stride 1: lax's own
    ((2, 9, 9, 3), 3, 2, 'SAME'),     # a kernel the stride does not divide: lax's own
])
def test_strided_conv_is_lax_values_and_gradients(shape, kernel, stride, pads):
    """Same values (bit for bit from 4 input channels; to rounding below, where the forward
    pass goes through space-to-depth) and gradients (to float rounding) as lax, under jit."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, shape[-1], 5)), jnp.float32)
    ours = jax.jit(lambda x, w: convolution.strided_conv(x, w, (stride, stride), pads,
                                                          dimension_numbers=DN))
    ref = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), pads,
                                                             dimension_numbers=DN))
    if shape[-1] >= convolution.S2D_FORWARD_CHANNELS or stride == 1 or kernel % stride:
        np.testing.assert_array_equal(ours(x, w), ref(x, w))
    else:
        np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
    got = jax.jit(jax.grad(_loss(convolution.strided_conv, stride, pads), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(_loss(jax.lax.conv_general_dilated, stride, pads),
                            argnums=(0, 1)))(x, w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    # Forward mode too (the custom rule is a JVP).
    t = jnp.ones_like(x)
    _, jvp = jax.jvp(lambda x: convolution.strided_conv(x, w, (stride, stride), pads,
                                                         dimension_numbers=DN), (x,), (t,))
    _, jvp_ref = jax.jvp(lambda x: jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=DN), (x,), (t,))
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-4, atol=1e-4)
    tw = jnp.ones_like(w)  # and through the kernel
    _, jvp = jax.jvp(lambda w: convolution.strided_conv(x, w, (stride, stride), pads,
                                                         dimension_numbers=DN), (w,), (tw,))
    _, jvp_ref = jax.jvp(lambda w: jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=DN), (w,), (tw,))
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('channels', [1, 4])
def test_conv_is_flax_conv_with_the_same_parameters(channels):
    """`convolution.Conv` is nn.Conv: the same parameter tree, values and gradients, so runs
    and checkpoints written before it stay valid (values bit for bit from 4 input channels,
    to rounding below, where the forward pass goes through space-to-depth)."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 16, 16, channels)), jnp.float32)
    ours = convolution.Conv(4, (4, 4), strides=(2, 2), padding='SAME')
    theirs = nn.Conv(4, (4, 4), strides=(2, 2), padding='SAME')
    params = theirs.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(params)
    if channels >= convolution.S2D_FORWARD_CHANNELS:
        np.testing.assert_array_equal(ours.apply(params, x), theirs.apply(params, x))
    else:
        np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5,
                                   atol=1e-5)
    loss = lambda m: lambda p: jnp.sum(m.apply(p, x) ** 2)
    for g, r in zip(jax.tree.leaves(jax.grad(loss(ours))(params)),
                    jax.tree.leaves(jax.grad(loss(theirs))(params))):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_unsupported_layouts_go_to_lax():
    """NCHW (lax's default when dimension_numbers is None) and grouped convolutions are
    passed through unchanged."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 4, 8, 8)), jnp.float32)      # NCHW
    w = jnp.asarray(rng.normal(size=(6, 4, 4, 4)), jnp.float32)      # OIHW
    np.testing.assert_array_equal(
        convolution.strided_conv(x, w, (2, 2), [(1, 1), (1, 1)]),
        jax.lax.conv_general_dilated(x, w, (2, 2), [(1, 1), (1, 1)]))
    xg = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
    wg = jnp.asarray(rng.normal(size=(4, 4, 2, 6)), jnp.float32)
    np.testing.assert_array_equal(
        convolution.strided_conv(xg, wg, (2, 2), 'SAME', dimension_numbers=DN,
                                 feature_group_count=2),
        jax.lax.conv_general_dilated(xg, wg, (2, 2), 'SAME', dimension_numbers=DN,
                                     feature_group_count=2))


def test_depth_to_space_inverts_space_to_depth():
    x = jnp.arange(2 * 6 * 4 * 3, dtype=jnp.float32).reshape(2, 6, 4, 3)
    s = convolution.space_to_depth(x, 2)
    assert s.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(s[0, 0, 0], np.concatenate([x[0, 0, 0], x[0, 0, 1],
                                                              x[0, 1, 0], x[0, 1, 1]]))
    np.testing.assert_array_equal(convolution.depth_to_space(s, 2), x)


def test_depth_to_space_matches_numpy():
    x = np.arange(2 * 3 * 3 * 8, dtype=np.float32).reshape(2, 3, 3, 8)
    y = np.asarray(convolution.depth_to_space(jnp.asarray(x), 2))
    for py in range(2):
        for px in range(2):
            np.testing.assert_array_equal(y[:, py::2, px::2, :], x[..., (py * 2 + px) * 2:(py * 2 + px + 1) * 2])
