"""vae_jax.upsample: every form of the ×2 transposed convolution against a numpy loop, values,
gradients and forward-mode derivatives; the decoder's upsampling layers against the same loop."""

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
    # With respect to the kernel: the forward pass and four per-phase weight gradients (3 -> 5
    # channels: fewer than vae_jax's weight-gradient kernel takes, tests/test_weight_gradient.py).
    w_convs = convs(jax.make_jaxpr(jax.grad(loss, argnums=1))(x, w).jaxpr)
    assert len(w_convs) == 5
    assert all(p['window_strides'] == (1, 1) and p['lhs_dilation'] == (1, 1) for p in w_convs)


def test_upsample_conv_refuses_odd_kernels():
    with pytest.raises(ValueError, match='even size'):
        upsample.upsample_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)))


def test_subpixel_layer_represents_a_4x4_stride2_transposed_conv_exactly():
    """The docstring's claim: every 4x4/stride-2 transposed conv is a 3x3 sub-pixel conv."""
    rng = np.random.default_rng(0)
    cin, cout = 3, 2
    x = rng.normal(size=(2, 5, 6, cin))
    wt = rng.normal(size=(4, 4, cin, cout))
    # Output phase p (0 even, 1 odd) at offset d in {-1, 0, 1} reads transposed-kernel tap tap[p][d].
    tap = {0: {-1: 3, 0: 1}, 1: {0: 2, 1: 0}}
    kernel = np.zeros((3, 3, cin, 4 * cout))
    for py in range(2):
        for px in range(2):
            for dy, ky in tap[py].items():
                for dx, kx in tap[px].items():
                    kernel[dy + 1, dx + 1, :, (py * 2 + px) * cout:(py * 2 + px + 1) * cout] = wt[ky, kx]
    layer = upsample.SubPixelUpsample(cout)
    params = {'params': {'Conv_0': {'kernel': jnp.asarray(kernel, jnp.float32),
                                    'bias': jnp.zeros(4 * cout)}}}
    got = layer.apply(params, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, _upsample_reference(x, wt), rtol=1e-4, atol=1e-4)


def test_transposed_upsample_layer_is_the_papers_transposed_conv():
    """TransposedConvUpsample with kernel w computes ConvTranspose2d(4, 2, 1) with w, and draws
    its kernel with variance 1 / ((k/2)² c_in), the fan-in of each output pixel."""
    rng = np.random.default_rng(1)
    cin, cout = 3, 2
    x = rng.normal(size=(2, 5, 6, cin))
    wt = rng.normal(size=(4, 4, cin, cout))
    layer = upsample.TransposedConvUpsample(cout)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 5, 6, cin)))
    assert jax.tree.map(jnp.shape, params) == {'params': {'kernel': (4, 4, cin, cout),
                                                          'bias': (cout,)}}
    params = {'params': {'kernel': jnp.asarray(wt, jnp.float32), 'bias': jnp.ones(cout)}}
    got = layer.apply(params, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, _upsample_reference(x, wt) + 1, rtol=1e-4, atol=1e-4)
    big = upsample.TransposedConvUpsample(64).init(jax.random.key(1), jnp.zeros((1, 4, 4, 256)))
    std = float(jnp.std(big['params']['kernel']))
    assert abs(std - 1 / np.sqrt(4 * 256)) < 0.05 / np.sqrt(4 * 256)
