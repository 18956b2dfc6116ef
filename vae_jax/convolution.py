"""Convolutions as vae_jax's layers compute them: `Conv` is flax's `nn.Conv` (the same class,
parameters, and values and derivatives to float rounding) computed by `conv_general_dilated`,
which picks, when it is traced, the formulation the backend runs fastest:

- on CPU: `strided_conv`, XLA's convolution whose *input gradient* for a strided kernel is a
  stride-1 convolution over space-to-depth inputs instead of the lhs-dilated convolution
  autodiff produces (which XLA:CPU runs without an optimised kernel), whose *weight gradient*
  is vae_jax's own kernel where it applies (`vae_jax.weight_gradient`: input channels a
  multiple of 8 and output channels of 32, on a CPU with AVX-512; 2.6× faster than XLA's on
  the β-VAE encoder's 32×32×32 layer, one core), and whose forward pass over fewer than 4
  input channels (an image's first layer) goes through space-to-depth too;
- on GPU/TPU: `lax.conv_general_dilated` itself.

The decoder's ×2 transposed convolution is `vae_jax.upsample`'s.

Tried against these and not kept (2-core CPU, batch 64, the β-VAE's layers; one-off scripts,
their numbers in benchmarks/README.md): a convolution as one matrix multiplication of its
input's patches (im2col: kh·kw strided slices concatenated, then dot_general) is several times
slower here, because XLA:CPU copies the patches slowly; a strided convolution's weight gradient
over space-to-depth inputs, per input phase, or as one matmul of the space-to-depth input with
the shifted output gradients, costs in copies what it saves in the transposed copy of the
activations that XLA's own weight gradient reads (vae_jax's kernel reads them as they are).
The rest of the conv step's speed-up on CPU comes from XLA flags (`xla_setup.CPU_FLAGS`, and
the β-VAE family's `config.xla_cpu_flags`: `xla_setup.BETA_VAE_CPU_FLAGS`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from vae_jax import weight_gradient

NHWC = ('NHWC', 'HWIO', 'NHWC')


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """Rearranges channels into space: [b, h, w, f*f*c] -> [b, h*f, w*f, c]."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, factor, factor, c // (factor * factor))
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, c // (factor * factor))


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """Rearranges space into channels: [b, h*f, w*f, c] -> [b, h, w, f*f*c]; see depth_to_space."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // factor, factor, w // factor, factor, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // factor, w // factor, factor * factor * c)


def _pads(lhs_shape, rhs_shape, strides, padding) -> tuple:
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs_shape[1:3], rhs_shape[:2], strides, padding)
    return tuple(tuple(p) for p in padding)


def _supported(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
               kwargs) -> bool:
    """Whether `strided_conv` covers the call: a plain 2-D NHWC/HWIO convolution (lax's default
    layout, `dimension_numbers=None`, is NCHW)."""
    return (lhs.ndim == 4 and feature_group_count == 1
            and all(v is None for k, v in kwargs.items() if k != 'precision')
            and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
            and dimension_numbers in (lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC),
                                      NHWC))


def conv_nhwc(x, kernel, pads, stride: int) -> jax.Array:
    """lax's convolution of x [b, h, w, c_in] with kernel [kh, kw, c_in, c_out] at one stride
    along both axes, `pads` as lax takes them."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=NHWC)


def _strided_conv_s2d(x, kernel, pads, stride):
    """The same strided convolution as pad -> space-to-depth -> stride-1 VALID convolution.

    Output pixel i reads padded pixels s·i .. s·i+k-1, i.e. space-to-depth pixels i .. i+k/s-1;
    kernel tap s·q + r becomes tap q of channel block r. Needs k % s == 0.
    """
    kh, kw, c, o = kernel.shape
    s = stride
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    oh, ow = (x.shape[1] - kh) // s + 1, (x.shape[2] - kw) // s + 1
    x = space_to_depth(x[:, :(oh - 1) * s + kh, :(ow - 1) * s + kw], s)
    k = kernel.reshape(kh // s, s, kw // s, s, c, o).transpose(0, 2, 1, 3, 4, 5)
    return conv_nhwc(x, k.reshape(kh // s, kw // s, s * s * c, o), 'VALID', 1)


# With fewer input channels than this, the forward pass of a strided convolution runs faster
# over space-to-depth inputs: the β-VAE's first layer (64×64×1 -> 32×32×32, k4 s2, batch 64)
# in 0.98 ms against lax's 2.06 (`python benchmarks/conv_layers.py`); from 8 channels up it
# was slower (one-off trials, in the note).
S2D_FORWARD_CHANNELS = 4


def _strided_forward(x, kernel, pads, stride):
    if x.shape[-1] < S2D_FORWARD_CHANNELS:
        return _strided_conv_s2d(x, kernel, pads, stride)
    return conv_nhwc(x, kernel, pads, stride)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _strided_conv(x, kernel, pads, stride):
    return _strided_forward(x, kernel, pads, stride)


@_strided_conv.defjvp
def _strided_conv_jvp(pads, stride, primals, tangents):
    (x, kernel), (dx, dkernel) = primals, tangents
    # The x-tangent's transpose, the input gradient, is then a stride-1 convolution instead of
    # an lhs-dilated one; the kernel tangent's, the weight gradient, vae_jax's own kernel
    # where it applies.
    if weight_gradient.kernel_applies(x.shape, kernel.shape, x.dtype):
        kernel_term = weight_gradient.kernel_tangent(
            x, dkernel, conv_nhwc, weight_gradient.conv_weight_gradient, pads, stride)
    else:
        kernel_term = _strided_forward(x, dkernel, pads, stride)
    tangent = _strided_conv_s2d(dx, kernel, pads, stride) + kernel_term
    return _strided_forward(x, kernel, pads, stride), tangent


def strided_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, **kwargs) -> jax.Array:
    """XLA's convolution with the input gradient of a strided one as a stride-1 convolution
    (and its weight gradient vae_jax's kernel where `weight_gradient.kernel_applies`).

    The same parameters, and values and derivatives (forward and reverse mode) to float
    rounding, as nn.Conv: values bit for bit with 4 or more input channels, where only the
    gradients change form. For a stride-2 4×4 convolution autodiff produces an lhs-dilated
    convolution, which XLA:CPU runs without an optimised kernel (23 ms against 2 ms through
    space-to-depth for 32×32×32 -> 16×16×32 at batch 64, 2 cores). Anything else (stride 1,
    kernels the stride does not divide, dilation, groups) goes to lax unchanged.
    """
    s = window_strides[0]
    if (s == 1 or not _supported(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, kwargs)
            or set(window_strides) != {s} or any(k % s for k in rhs.shape[:2])
            or kwargs.get('precision') is not None):
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        **kwargs)
    return _strided_conv(lhs, rhs, _pads(lhs.shape, rhs.shape, window_strides, padding), s)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         **kwargs) -> jax.Array:
    """`lax.conv_general_dilated`, computed the way the backend runs fastest: `strided_conv`
    on CPU, lax's own elsewhere. The same parameters, values and derivatives either way (to
    float rounding)."""
    impl = strided_conv if jax.default_backend() == 'cpu' else lax.conv_general_dilated
    return impl(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                dimension_numbers, feature_group_count, **kwargs)


# flax's nn.Conv (the same class, so the same parameter names and shapes) computed by
# `conv_general_dilated`.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
