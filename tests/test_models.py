"""models.py: shapes, conditioning, and the upsampling layers against a transposed convolution."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config
from vae_jax.errors import UserError
from vae_jax.models import (SubPixelUpsample, TransposedConvUpsample, build_model,
                            depth_to_space)


def _model(example_shape, num_classes=0, **overrides):
    c = base_config().model
    c.update(overrides)
    return build_model(c, example_shape, num_classes)


@pytest.mark.parametrize('shape,encoder,channels,likelihood,k', [
    ((28, 28, 1), 'mlp', (32, 64), 'bernoulli', 1),
    ((28, 28, 1), 'conv', (32, 64), 'gaussian_learned', 2),
    ((28, 28, 1), 'conv', (32, 32, 64, 64), 'bernoulli', 1),  # 2x2 map -> 32x32, cropped to 28
    ((64, 64, 1), 'conv', (32, 32, 64, 64), 'bernoulli', 1),
    ((2,), 'mlp', (32,), 'gaussian', 1),
])
def test_shapes(shape, encoder, channels, likelihood, k):
    model = _model(shape, encoder=encoder, conv_channels=channels, likelihood=likelihood,
                   latents=6, hidden=(16,))
    x = jnp.zeros((3, *shape))
    params = model.init(jax.random.key(0), x)['params']
    mean, logvar = model.apply({'params': params}, x, method=model.encode)
    chex.assert_shape([mean, logvar], (3, 6))
    out = model.apply({'params': params}, mean, method=model.decode)
    chex.assert_shape(out, (3, *shape, k))


@pytest.mark.parametrize('encoder', ['mlp', 'conv'])
def test_conditional_decoder_depends_on_label(encoder):
    model = _model((28, 28, 1), num_classes=10, encoder=encoder, conditional=True, latents=4)
    x, y = jnp.ones((2, 28, 28, 1)), jnp.array([3, 7])
    params = model.init(jax.random.key(0), x, y)['params']
    z = jnp.zeros((2, 4))
    out_a = model.apply({'params': params}, z, jnp.array([3, 3]), method=model.decode)
    out_b = model.apply({'params': params}, z, jnp.array([3, 7]), method=model.decode)
    np.testing.assert_allclose(out_a[0], out_b[0])
    assert not np.allclose(out_a[1], out_b[1])
    with pytest.raises(ValueError, match='conditional'):
        model.apply({'params': params}, z, None, method=model.decode)


def test_build_model_rejects_bad_config():
    with pytest.raises(UserError, match='likelihood'):
        _model((28, 28, 1), likelihood='poisson')
    with pytest.raises(UserError, match='prior'):
        _model((28, 28, 1), prior='vamp')
    with pytest.raises(UserError, match='conv encoder needs images'):
        _model((2,), encoder='conv')
    with pytest.raises(UserError, match='labelled'):
        _model((28, 28, 1), num_classes=0, conditional=True)


def test_depth_to_space_matches_numpy():
    x = np.arange(2 * 3 * 3 * 8, dtype=np.float32).reshape(2, 3, 3, 8)
    y = np.asarray(depth_to_space(jnp.asarray(x), 2))
    for py in range(2):
        for px in range(2):
            np.testing.assert_array_equal(y[:, py::2, px::2, :], x[..., (py * 2 + px) * 2:(py * 2 + px + 1) * 2])


def _transposed_conv_reference(x, w):
    """PyTorch ConvTranspose2d(k=4, stride=2, padding=1) semantics, written as loops.

    x: [b, h, w, cin], w: [4, 4, cin, cout] -> [b, 2h, 2w, cout]: out[2i-1+ky, 2j-1+kx] += x[i, j] w[ky, kx].
    """
    b, h, wd, _ = x.shape
    out = np.zeros((b, 2 * h + 2, 2 * wd + 2, w.shape[-1]))
    for ky in range(4):
        for kx in range(4):
            out[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += x @ w[ky, kx]
    return out[:, 1:2 * h + 1, 1:2 * wd + 1]


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
    layer = SubPixelUpsample(cout)
    params = {'params': {'Conv_0': {'kernel': jnp.asarray(kernel, jnp.float32),
                                    'bias': jnp.zeros(4 * cout)}}}
    got = layer.apply(params, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, _transposed_conv_reference(x, wt), rtol=1e-4, atol=1e-4)



def test_transposed_upsample_layer_is_the_papers_transposed_conv():
    """TransposedConvUpsample with kernel w computes ConvTranspose2d(4, 2, 1) with w, and draws
    its kernel with variance 1 / ((k/2)² c_in), the fan-in of each output pixel."""
    rng = np.random.default_rng(1)
    cin, cout = 3, 2
    x = rng.normal(size=(2, 5, 6, cin))
    wt = rng.normal(size=(4, 4, cin, cout))
    layer = TransposedConvUpsample(cout)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 5, 6, cin)))
    assert jax.tree.map(jnp.shape, params) == {'params': {'kernel': (4, 4, cin, cout),
                                                          'bias': (cout,)}}
    params = {'params': {'kernel': jnp.asarray(wt, jnp.float32), 'bias': jnp.ones(cout)}}
    got = layer.apply(params, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, _transposed_conv_reference(x, wt) + 1, rtol=1e-4, atol=1e-4)
    big = TransposedConvUpsample(64).init(jax.random.key(1), jnp.zeros((1, 4, 4, 256)))
    std = float(jnp.std(big['params']['kernel']))
    assert abs(std - 1 / np.sqrt(4 * 256)) < 0.05 / np.sqrt(4 * 256)


@pytest.mark.parametrize('upsample,per_layer', [('transposed', 16), ('subpixel', 36)])
def test_conv_decoder_upsamples_with_the_configured_layer(upsample, per_layer):
    """model.upsample picks the decoder's ×2 layers: the paper's 4×4 transposed convolutions
    (k²·c_in·c_out weights each) or the 3×3 sub-pixel ones (9·c_in·4·c_out)."""
    model = _model((64, 64, 1), encoder='conv', conv_channels=(32, 32, 64, 64), upsample=upsample)
    x = jnp.zeros((2, 64, 64, 1))
    params = model.init(jax.random.key(0), x)['params']
    layers = [v for k, v in sorted(params['decoder'].items()) if 'Upsample' in k]
    kernels = [p['kernel'] if 'kernel' in p else p['Conv_0']['kernel'] for p in layers]
    sizes = [(64, 64), (64, 32), (32, 32), (32, 1)]  # (c_in, c_out), 4×4 -> 64×64
    assert [k.size for k in kernels] == [per_layer * i * o for i, o in sizes]
    z = model.apply({'params': params}, x, method=model.encode)[0]
    assert model.apply({'params': params}, z, method=model.decode).shape == (2, 64, 64, 1, 1)
