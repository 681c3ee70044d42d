"""The step-cost counter (reid.engine.cost) against FLOPs counted by hand."""
import torch
from torch import nn

from reid.engine.cost import count_flops, matmul_peak_gflops


def test_conv_flops_equal_the_hand_count_forward_and_backward():
    b, cin, cout, h, w, k = 2, 3, 4, 5, 6, 3
    conv = nn.Conv2d(cin, cout, k, padding=1, bias=False)
    x = torch.randn(b, cin, h, w, requires_grad=True)
    forward = 2 * b * cout * h * w * cin * k * k  # one multiply-add per weight per output position
    assert count_flops(lambda: conv(x)) == forward
    # backward: the input gradient and the weight gradient each cost one forward
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_linear_flops_and_frozen_input():
    lin = nn.Linear(7, 5)
    x = torch.randn(3, 7)  # no input gradient: backward computes the weight gradient only
    assert count_flops(lambda: lin(x)) == 2 * 3 * 7 * 5
    assert count_flops(lambda: lin(x).sum().backward()) == 2 * (2 * 3 * 7 * 5)


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak_gflops("cpu", n=128, repeats=1) > 0
