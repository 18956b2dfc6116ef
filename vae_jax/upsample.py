"""The decoder's ×2 transposed convolution, `upsample_conv` (the Burgess et al. decoder's
layer; PyTorch's `ConvTranspose2d(k, stride=2, padding=k/2 - 1)`), computed the way the backend
runs fastest: on CPU from 4 output channels up, its forward pass is one stride-1 convolution to
all four output phases' channels, interleaved by depth-to-space, its input gradient one
stride-2 convolution of the output gradient and its weight gradient vae_jax's own kernel
(`weight_gradient.transposed_conv_weight_gradient`, where input channels are a multiple of 32
and output channels of 8; else one per output phase) (`_upsample_conv_cpu`); with fewer than 4
output channels (an image's last layer) it is one matrix multiplication followed by an overlap-add (`_upsample_conv_blocks`); on GPU/TPU, lax's
transposed convolution. `UPSAMPLERS` holds the conv decoder's ×2 layers that
`config.model.upsample` names: this convolution (`TransposedConvUpsample`) and the earlier
sub-pixel layer (`SubPixelUpsample`).

Tried against these and not kept (2-core CPU, batch 64, the β-VAE's layers; numbers in
benchmarks/README.md): a transposed convolution as one matmul plus an overlap-add of its 16
taps is 1.7-6× slower than the per-phase convolutions on the layers of 32 output channels
(`python benchmarks/upsampling.py --quick --beta_vae_flags`, 2026-12-03 at 23:03; 3-8× before
the overlap-add was split), so only the last layer takes it.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from vae_jax import weight_gradient
from vae_jax.convolution import NHWC, Conv, conv_nhwc, depth_to_space


def _upsample_phase(k: int, a: int) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(taps, (low, high) padding) of output phase a (rows 2n + a) of `upsample_conv` with a
    k-tap kernel: row 2n + a sums input rows n + c - (m - 1) + u, u = 0..m-1 (m = k/2,
    c = (a + k/2 - 1) // 2), through kernel taps taps[u]."""
    m, p = k // 2, k // 2 - 1
    c = (a + p) // 2
    return tuple(2 * (m - 1 - u) + (a + p) % 2 for u in range(m)), (m - 1 - c, c)


def _phase_kernel(kernel, a: int, q: int):
    """The [k/2, k/2, c_in, c_out] taps of `upsample_conv`'s output phase (a, q) (rows 2n + a,
    columns 2n + q) of a [k, k, c_in, c_out] kernel."""
    taps_a, taps_q = (jnp.asarray(_upsample_phase(kernel.shape[0], p)[0]) for p in (a, q))
    return kernel[taps_a[:, None], taps_q[None, :]]


def _interleave(phases):
    """phases[a][q] [b, h, w, c] (output rows 2n + a, columns 2n + q) -> [b, 2h, 2w, c]."""
    b, h, w, c = phases[0][0].shape
    rows = [jnp.stack(row, 3) for row in phases]         # [b, h, w, 2 (q), c]
    return jnp.stack(rows, 2).reshape(b, 2 * h, 2 * w, c)  # [b, h, 2 (a), w, 2 (q), c]


def _upsample_conv_phases(x, kernel):
    """`upsample_conv` as four stride-1 (k/2)×(k/2) convolutions, one per output phase (row
    parity a, column parity q), each padded to yield exactly its [b, h, w, c_out]; interleaved.
    The multiply-adds of the transposed convolution, without its zero-dilated input."""
    pads = [_upsample_phase(kernel.shape[0], a)[1] for a in (0, 1)]
    return _interleave([[conv_nhwc(x, _phase_kernel(kernel, a, q), (pads[a], pads[q]), 1)
                         for q in (0, 1)] for a in (0, 1)])


def _upsample_conv_allphase(x, kernel):
    """`upsample_conv` as one stride-1 (k/2)×(k/2) convolution to all four output phases'
    4·c_out channels (each phase's taps side by side in one kernel, the input padded for the
    phase that needs most), then depth-to-space and a crop. One convolution with 4·c_out output
    channels runs faster than four with c_out (3.0 against 3.8 ms for the β-VAE's 16×16×32 ->
    32×32×32 layer on one core, a one-off measurement of 2026-12-04).

    Output row 2n + a (phase a) is row n + o_a of the convolution's output, o_a = low - low_a
    (low_a: the padding phase a needs above), and o_1 - o_0 = s is 0 or 1. The channels of
    phase a go to depth-to-space slot (a + s) mod 2, so that row 2n + a is row 2n + a + 2·o_0 + s
    after depth-to-space: one crop then interleaves every phase. XLA:CPU runs that (a copy of
    c_out-float runs) faster than slicing each phase out and stacking them: the 16×16×32
    layer's forward pass with its ReLU took 2.11 against 2.62 ms on two cores and 3.68 against
    4.68 on one, the smaller layers 2-6% less (`python benchmarks/decoder_form.py --layers`, and
    with `--one_thread` under `taskset -c 0`, 2026-12-04 at 14:19). In the whole train step the
    gain is within the noise (34.78 against 34.75 ms, 11 rotating rounds, the same kernel count
    and elements written: `python benchmarks/decoder_form.py --rounds 11`). The same values
    bit for bit.
    """
    _, h, w, _ = x.shape
    k = kernel.shape[0]
    lows, highs = zip(*(_upsample_phase(k, a)[1] for a in (0, 1)))
    low, high = max(lows), max(highs)
    o0, s = low - lows[0], lows[0] - lows[1]
    slot_phase = [(r + s) % 2 for r in (0, 1)]  # the phase whose channels fill slot r
    both = jnp.concatenate([_phase_kernel(kernel, slot_phase[r], slot_phase[c])
                            for r in (0, 1) for c in (0, 1)], -1)  # [m, m, c_in, (r, c, c_out)]
    y = conv_nhwc(x, both, ((low, high), (low, high)), 1)
    start = 2 * o0 + s
    return depth_to_space(y, 2)[:, start:start + 2 * h, start:start + 2 * w]


@jax.custom_jvp
def _upsample_conv_cpu(x, kernel):
    """`upsample_conv` on CPU from 4 output channels up: the all-phase convolution forward, and
    derivatives whose reverse mode XLA:CPU runs fast (see the jvp)."""
    return _upsample_conv_allphase(x, kernel)


def _upsample_conv_cpu_jvp(primals, tangents):
    (x, kernel), (dx, dkernel) = primals, tangents
    out = _upsample_conv_allphase(x, kernel)
    # Reverse mode transposes each term. The zero-dilated form's input tangent becomes one
    # stride-2 convolution of the output gradient (instead of four per-phase convolutions of
    # its slices); the kernel tangent becomes vae_jax's weight-gradient kernel, or where that
    # does not apply four per-phase weight gradients (the all-phase form's took XLA:CPU over
    # ten times longer). Forward mode computes them as written: the zero-dilated convolution
    # is slow on CPU, but correct. JAX calls this only when at least one tangent is not a
    # symbolic zero.
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_upsample_conv_dilated(dx, kernel))
    if not isinstance(dkernel, SymbolicZero):
        if weight_gradient.transposed_kernel_applies(x.shape, kernel.shape, x.dtype):
            # Reverse mode: vae_jax's weight-gradient kernel, over the whole output gradient.
            terms.append(weight_gradient.kernel_tangent(x, dkernel, _upsample_conv_phases,
                                                        _upsample_weight_gradient))
        else:
            terms.append(_upsample_conv_phases(x, dkernel))
    return out, functools.reduce(jnp.add, terms)


def _upsample_weight_gradient(x, g, kernel_shape):
    """The gradient of <g, upsample_conv(x, w)> with respect to w [k, k, c_in, c_out]."""
    return weight_gradient.transposed_conv_weight_gradient(x, g, kernel_shape,
                                                           kernel_shape[0] // 2 - 1, 2)


_upsample_conv_cpu.defjvp(_upsample_conv_cpu_jvp, symbolic_zeros=True)


def _upsample_conv_dilated(x, kernel):
    """`upsample_conv` as lax computes a transposed convolution: the input dilated by zeros."""
    k = kernel.shape[0]
    return lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), [(k // 2, k // 2)] * 2,
                                    lhs_dilation=(2, 2), dimension_numbers=NHWC)


def upsample_tap_products(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [b, h, w, c_in], kernel [k, k, c_in, c_out] -> [b, h, w, (k/2)²·4·c_out]: every tap's
    contribution to `upsample_conv`'s output, in one matmul; column (m, n, a, q, o) holds tap
    2m + a of the rows and 2n + q of the columns, output channel o.

    The kernel is arranged [(m, n, a, q, c_out), c_in] and contracted on its last axis, so
    that the kernel's gradient is the output gradient's transpose times x, an ordinary matmul
    with x's pixels as the inner axis. With the kernel arranged [c_in, (m, n, a, q, c_out)]
    instead, XLA:CPU computed that gradient as a matmul of two transposed operands, after a
    transposed copy of the output gradient: in the β-VAE's step, for its last layer (65,536
    pixels, 32 -> 16 columns), 2.46 ms and the copy 0.48 before, 0.84 ms and no copy after,
    on one core (`taskset -c 0 python benchmarks/step_profile.py --ops --one_thread`, a run
    before and one after, 2026-12-04; the whole step gained 1-2%, within the runs' noise).
    """
    b, h, w, c = x.shape
    c_out, m_taps = kernel.shape[3], kernel.shape[0] // 2
    # Tap 2m + a of each axis -> [m, n, (a, q, c_out), c].
    kk = kernel.reshape(m_taps, 2, m_taps, 2, c, c_out).transpose(0, 2, 1, 3, 5, 4)
    out = lax.dot_general(x.reshape(b * h * w, c), kk.reshape(-1, c), (((1,), (1,)), ((), ())))
    return out.reshape(b, h, w, -1)


def _upsample_conv_blocks(x, kernel):
    """`upsample_conv` as one matrix multiplication and an overlap-add: x ``[b, h, w, c_in]``
    times the kernel arranged ``[c_in, (m, n, a, q, c_out)]`` gives every tap's contribution
    (tap 2m + a of the rows, 2n + q of the columns); the 2×2 block (I, J) of output pixels
    (rows 2I + a, columns 2J + q) sums the (k/2)² parts of it shifted by (m, n); then
    depth-to-space and the crop of k/2 - 1 pixels. The multiply-adds of the transposed
    convolution, in one matmul with (k/2)²·4·c_out columns: on CPU the fastest form for a
    few output channels, where a convolution per phase has one to three output features.

    The parts are split off (`lax.split`) and each padded into place, so that the backward
    pass slices the blocks' gradient (a few output channels: small) and concatenates the
    slices, where shifted slices of one padded array would have it pad each slice's gradient
    to the whole matmul output's size and add them up."""
    b, h, w, _ = x.shape
    k, c_out = kernel.shape[0], kernel.shape[-1]
    m_taps, p = k // 2, k // 2 - 1
    e = m_taps - 1
    parts = lax.split(upsample_tap_products(x, kernel), [4 * c_out] * (m_taps * m_taps),
                      axis=3)  # (m, n) in row-major order
    blocks = functools.reduce(jnp.add, [
        jnp.pad(parts[m * m_taps + n], ((0, 0), (m, e - m), (n, e - n), (0, 0)))
        for m in range(m_taps) for n in range(m_taps)])
    return depth_to_space(blocks, 2)[:, p:p + 2 * h, p:p + 2 * w]


# With fewer output channels than this, `upsample_conv` on CPU is `_upsample_conv_blocks`,
# otherwise `_upsample_conv_cpu`. With the β-VAE step's flags, the decoder's last layer
# (32×32×32 -> 64×64×1, batch 64) takes 2.13 ms forward and 2.86 ms for its gradients (XLA
# leaves out the forward pass they do not need) against 8.56 and 7.82 as per-phase convolutions
# (PyTorch's ConvTranspose2d: 5.11 forward, 9.64 forward and backward);
# layers of 32 output channels are 1.7-6× slower as blocks (`python benchmarks/upsampling.py
# --quick --beta_vae_flags`, 2026-12-03 at 23:03).
BLOCKS_CHANNELS = 4


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The ×2 transposed convolution of the Burgess et al. decoder (PyTorch's
    `ConvTranspose2d(k, stride=2, padding=k/2 - 1)`, TensorFlow's `conv2d_transpose` with SAME
    padding): x [b, h, w, c_in], kernel [k, k, c_in, c_out] (k even) -> [b, 2h, 2w, c_out],
    out[2i - (k/2 - 1) + t] += x[i] · kernel[t] along each spatial axis.

    On CPU it is `_upsample_conv_cpu`: forward, one stride-1 (k/2)×(k/2) convolution to all
    four output phases (`_upsample_conv_allphase`); backward, the input gradient as one stride-2
    convolution and the weight gradient by vae_jax's kernel (`vae_jax.weight_gradient`; per
    phase where it does not apply). XLA:CPU runs the backward pass of the
    zero-dilated form that lax uses for transposed convolutions 10-20× slower, and the
    all-phase form's forward and backward ("phases 2x2 pad=1") 30× slower, most of it in its
    weight gradient (`python benchmarks/upsampling.py`). Against the four per-phase
    convolutions it replaced (`_upsample_conv_phases`), forward and backward of the β-VAE's
    16×16×32 -> 32×32×32 layer took 5.09 and 6.78 ms against 5.59 and 7.02 in two runs, and
    the 7×7×64 -> 14×14×32 layer (batch 128) 2.75 against 3.90; the conv β-VAE's train step
    writes 48.2 million f32 elements per step instead of 50.3 and took 37.9 ms (35.2-48.8)
    against 38.1 (35.4-43.3), within the noise (`python benchmarks/decoder_form.py --rounds 11`,
    2026-12-04 at 13:45, a 2-core AMD EPYC VM; one-off alternating runs in one process that
    morning gave 27.4 against 26.4 steps/s on two cores and 17.6 against 17.2 on one). With
    fewer than `BLOCKS_CHANNELS` output channels it is one matmul and an overlap-add
    (`_upsample_conv_blocks`). Elsewhere it is lax's transposed convolution. The same values
    and derivatives (to float rounding) every way, forward and reverse mode.
    """
    if kernel.shape[0] % 2 or kernel.shape[1] != kernel.shape[0]:
        raise ValueError(f'upsample_conv needs a square kernel of even size, got {kernel.shape}')
    if jax.default_backend() == 'cpu':
        if kernel.shape[-1] < BLOCKS_CHANNELS:
            return _upsample_conv_blocks(x, kernel)
        return _upsample_conv_cpu(x, kernel)
    return _upsample_conv_dilated(x, kernel)


class TransposedConvUpsample(nn.Module):
    """×2 upsampling as the Burgess et al. decoder has it: a k×k, stride-2 transposed
    convolution (`upsample_conv`; PyTorch's `ConvTranspose2d(k, 2, k/2 - 1)`).

    Parameters: kernel [k, k, c_in, c_out], bias [c_out]. Each output pixel sums (k/2)²·c_in
    input terms, so the kernel is drawn as LeCun-normal over that fan-in (flax's ConvTranspose
    would count k²·c_in).
    """
    features: int
    kernel: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        init = nn.initializers.variance_scaling(4.0, 'fan_in', 'truncated_normal')
        kernel = self.param('kernel', init, (k, k, x.shape[-1], self.features))
        bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
        return upsample_conv(x, kernel) + bias


class SubPixelUpsample(nn.Module):
    """×2 upsampling as a 3×3 convolution to 4·c channels followed by depth-to-space
    (`model.upsample = 'subpixel'`; vae_jax's conv decoder before 'transposed').

    Every output pixel of a 4×4, stride-2 transposed convolution reads a 3×3 input
    neighbourhood, so this layer represents a superset of that layer, with 9/4 of its
    parameters and multiply-adds.
    """
    features: int
    kernel: int = 4  # unused: the layer is 3×3 whatever the encoder's kernel

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(4 * self.features, (3, 3), padding='SAME')(x)
        return depth_to_space(x, 2)


# config.model.upsample -> the conv decoder's ×2 upsampling layer, built as cls(features,
# kernel) with the encoder's kernel size.
UPSAMPLERS = {
    'transposed': TransposedConvUpsample,
    'subpixel': SubPixelUpsample,
}
