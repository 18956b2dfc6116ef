"""Convolutions' weight gradients on CPU, computed by vae_jax's own kernel.

XLA:CPU computes the weight gradient of a convolution as another convolution that reads the
activations transposed to batch-minor order, after a transposed copy of them that reads one
float per cache line. vae_jax's kernel (`vae_jax/native`) reads the NHWC activations as they
are. For the β-VAE encoder's 32×32×32 -> 16×16×32 layer (k4 s2, batch 64): 2.14 ms (251
GFLOP/s) against XLA's 5.59 (96) on one core, 1.20 against 4.32 on two; for the decoder's
16×16×32 -> 32×32×32 transposed convolution, against the per-phase weight gradients vae_jax
used before, 2.20 against 3.83 and 1.20 against 2.40 ms (`python benchmarks/weight_gradient.py`,
and under `taskset -c 0` with `--one_thread`; 2026-12-04 at 19:18, a 2-core AMD EPYC VM).

- `conv_weight_gradient` and `transposed_conv_weight_gradient`: the gradients themselves, by
  the kernel where it applies (`kernel_applies`: float32, input channels a multiple of 8 and
  output channels of 32, on CPU, the kernel built for AVX-512), else by XLA: the same values
  to float rounding.
- `kernel_tangent(x, dkernel, forward, gradient, *args)`: `forward(x, dkernel, *args)`, a
  convolution bilinear in its operands, as a primitive whose reverse-mode transpose with
  respect to the kernel is `gradient` (with respect to x, autodiff's transpose of `forward`).
  The layers' JVPs (`convolution.strided_conv`, `upsample.upsample_conv`) compute their kernel
  term with it, so that reverse mode reaches the kernel. Forward mode, a vmap inside the
  gradient, and derivatives of the gradient itself go through XLA's convolutions (any order,
  forward or reverse); a vmapped gradient (a vmapped sweep's step) calls the kernel once per
  mapped element, one after another (`vmap_method='sequential'`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vae_jax import native

TARGET = 'vae_jax_conv_weight_gradient'
# The kernel's register blocks: 8 input channels by 32 output channels.
INPUT_CHANNELS_MULTIPLE, OUTPUT_CHANNELS_MULTIPLE = 8, 32


def _conv(x, kernel, pads, stride: int) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (stride, stride), pads,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def kernel_applies(x_shape, kernel_shape, dtype) -> bool:
    """Whether `conv_weight_gradient` runs vae_jax's kernel for these operands."""
    return (jnp.dtype(dtype) == jnp.float32 and len(x_shape) == 4 and len(kernel_shape) == 4
            and x_shape[-1] % INPUT_CHANNELS_MULTIPLE == 0
            and kernel_shape[-1] % OUTPUT_CHANNELS_MULTIPLE == 0
            and kernel_tangent_p is not None
            and jax.default_backend() == 'cpu' and native.load())


def transposed_kernel_applies(x_shape, kernel_shape, dtype) -> bool:
    """Whether `transposed_conv_weight_gradient` runs vae_jax's kernel: the convolution whose
    weight gradient it is runs over the output gradient, so the channels' roles swap."""
    k0, k1, c_in, c_out = kernel_shape
    return kernel_applies((*x_shape[:3], c_out), (k0, k1, c_out, c_in), dtype)


def xla_conv_weight_gradient(x, g, kernel_shape, pads, stride: int) -> jax.Array:
    """XLA's form of `conv_weight_gradient`: autodiff's transpose of w -> lax's convolution of
    x with w (NHWC, HWIO) at g."""
    f = functools.partial(_conv, x, pads=pads, stride=stride)
    return jax.linear_transpose(f, jax.ShapeDtypeStruct(tuple(kernel_shape), x.dtype))(g)[0]


def conv_weight_gradient(x: jax.Array, g: jax.Array, kernel_shape, pads, stride: int):
    """The gradient of <g, conv(x, w)> with respect to w.

    Args:
        x: [b, h, w, c] the convolution's input.
        g: [b, oh, ow, o] the cotangent of its output.
        kernel_shape: (kh, kw, c, o).
        pads: ((low, high), (low, high)) along h and w, as lax takes them.
        stride: the same along both axes.

    Returns:
        [kh, kw, c, o], by vae_jax's kernel where it applies, else by XLA.
    """
    kernel_shape, pads = tuple(kernel_shape), tuple(map(tuple, pads))
    if not kernel_applies(x.shape, kernel_shape, x.dtype):
        return xla_conv_weight_gradient(x, g, kernel_shape, pads, stride)
    return _native_conv_weight_gradient(x, g, kernel_shape, pads, stride)


def transposed_conv_weight_gradient(x: jax.Array, g: jax.Array, kernel_shape, pad: int,
                                    stride: int) -> jax.Array:
    """The gradient with respect to w of <g, y>, y[s·i + t - pad] += x[i] · w[t] along each
    spatial axis (a transposed convolution, `upsample.upsample_conv`'s for stride 2).

    That is the weight gradient of the convolution of g whose output cotangent is x, with the
    kernel's channel axes swapped: sum over i of x[i] g[s·i + t - pad].

    Args:
        x: [b, h, w, c] the transposed convolution's input.
        g: [b, oh, ow, o] the cotangent of its output.
        kernel_shape: (kh, kw, c, o).
    """
    kh, kw, c, o = kernel_shape
    (h, w), (oh, ow) = x.shape[1:3], g.shape[1:3]
    pads = ((pad, (h - 1) * stride + kh - oh - pad), (pad, (w - 1) * stride + kw - ow - pad))
    return conv_weight_gradient(g, x, (kh, kw, o, c), pads, stride).transpose(0, 1, 3, 2)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _native_conv_weight_gradient(x, g, kernel_shape, pads, stride):
    (pad_h, _), (pad_w, _) = pads
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct(kernel_shape, jnp.float32),
                            vmap_method='sequential')
    return call(x, g, stride=np.int64(stride), pad_h=np.int64(pad_h), pad_w=np.int64(pad_w))


@_native_conv_weight_gradient.defjvp
def _native_conv_weight_gradient_jvp(kernel_shape, pads, stride, primals, tangents):
    # Bilinear in (x, g); the tangent in XLA's form, which autodiff can transpose.
    (x, g), (dx, dg) = primals, tangents
    tangent = (xla_conv_weight_gradient(dx, g, kernel_shape, pads, stride)
               + xla_conv_weight_gradient(x, dg, kernel_shape, pads, stride))
    return _native_conv_weight_gradient(x, g, kernel_shape, pads, stride), tangent


def _impl(x, dkernel, *, forward, gradient, args):
    return forward(x, dkernel, *args)


def _abstract(x, dkernel, **params):
    return jax.typeof(jax.eval_shape(functools.partial(_impl, **params), x, dkernel))


def _transpose_x(ct, x, dkernel, *, forward, gradient, args):
    f = functools.partial(_impl, dkernel=dkernel, forward=forward, gradient=gradient, args=args)
    return jax.linear_transpose(f, jax.ShapeDtypeStruct(x.aval.shape, x.aval.dtype))(ct)[0]


def _transpose_kernel(ct, x, dkernel, *, forward, gradient, args):
    return gradient(x, ct, dkernel.aval.shape, *args)


def _batch(operands, dims, **params):
    return jax.vmap(functools.partial(_impl, **params), in_axes=dims)(*operands), 0


def _register():
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching, mlir
    p = Primitive('vae_jax_kernel_tangent')
    p.def_impl(_impl)
    p.def_abstract_eval(_abstract)
    mlir.register_lowering(p, mlir.lower_fun(_impl, multiple_results=False))
    ad.defbilinear(p, _transpose_x, _transpose_kernel)
    batching.primitive_batchers[p] = _batch
    return p


try:
    kernel_tangent_p = _register()
except (ImportError, AttributeError):  # a JAX without these extension points: XLA's gradients
    kernel_tangent_p = None


def kernel_tangent(x: jax.Array, dkernel: jax.Array, forward, gradient, *args) -> jax.Array:
    """forward(x, dkernel, *args), whose transpose with respect to dkernel (reverse mode) is
    gradient(x, cotangent, dkernel.shape, *args).

    forward must be bilinear in (x, dkernel) and gradient its kernel transpose; both
    module-level functions and args hashable (they are the primitive's parameters).
    """
    return kernel_tangent_p.bind(x, dkernel, forward=forward, gradient=gradient,
                                 args=tuple(args))
