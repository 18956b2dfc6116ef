"""models.py: shapes, conditioning, and the upsampling layers against a transposed convolution."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import base_config
from vae_jax.errors import UserError
from vae_jax.models import build_model


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
