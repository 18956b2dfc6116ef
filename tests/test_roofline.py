"""benchmarks/roofline.py's FLOP count of a train step against the closed form of the model's
multiply-adds (its steps' timing is train_speed.py's)."""

import pytest


@pytest.fixture(scope='module')
def roofline(benchmark):
    return benchmark('roofline')


def dense_macs(*widths):
    return sum(a * b for a, b in zip(widths, widths[1:]))


def test_mlp_step_flops_are_its_layers_multiply_adds(roofline):
    # experiments/vae.py: 784-500-(20 means, 20 log-variances), 20-500-784, batch 128. A train
    # step multiplies-adds each layer's weights once forward and twice backward (the weight
    # and the input gradient), but the first layer's input gradient (the data's) is not
    # computed. The rest (biases, ReLU, loss, noise, Adam) is elementwise: a few percent.
    forward = dense_macs(784, 500, 40) + dense_macs(20, 500, 784)
    step = 2 * 128 * (3 * forward - 784 * 500)
    flops = roofline.step_flops('mlp')
    assert step <= flops <= 1.05 * step, (flops, step)


def test_conv_step_flops_are_its_layers_multiply_adds(roofline):
    # experiments/beta_vae.py at batch 64: 4×4 stride-2 convolutions 64×64×1 -> 32, 32, 64, 64
    # channels, dense 1024-256-(2×10); decoder 10-256-1024 (4×4×64), then 4×4 stride-2
    # transposed convolutions to 64, 32, 32 and 1 channels. A convolution's multiply-adds are
    # output pixels × k² × c_in × c_out, a transposed one's input pixels × k² × c_in × c_out.
    # XLA leaves out the taps that read padding or land outside the output (the border
    # pixels': 9% of these layers' taps), and neither counts the zeros of lax's dilated input.
    convs = [(32, 1, 32), (16, 32, 32), (8, 32, 64), (4, 64, 64)]  # (output size, in, out)
    transposed = [(4, 64, 64), (8, 64, 32), (16, 32, 32), (32, 32, 1)]  # (input size, in, out)
    forward = (sum(s * s * 16 * ci * co for s, ci, co in convs + transposed)
               + dense_macs(1024, 256, 20) + dense_macs(10, 256, 1024))
    step = 2 * 64 * (3 * forward - 32 * 32 * 16 * 1 * 32)
    flops = roofline.step_flops('conv')
    assert 0.85 * step <= flops <= 1.05 * step, (flops, step)
