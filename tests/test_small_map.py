"""The tiny-map conv path against torch's own conv: values, gradients and memory format."""

import pytest
import torch
import torch.nn.functional as F

from bnext.nn import BinaryConv2d, set_temperature
from bnext.nn.small_map import SmallMapConv2d, conv2d, uses_dense

CASES = [
    # (height, width, kernel, stride, padding)
    (1, 1, 3, 1, 1),  # only the centre tap ever meets the input
    (1, 1, 1, 1, 0),
    (2, 2, 3, 1, 1),  # every tap meets some input pixel
    (2, 2, 3, 2, 1),  # 2x2 -> 1x1: four taps
    (2, 2, 1, 1, 0),
    (1, 2, 3, 1, 1),  # a non-square map
    (4, 1, 3, 2, 1),
    (5, 5, 3, 1, 1),  # larger maps fall back to F.conv2d
]


@pytest.mark.parametrize("height, width, kernel, stride, padding", CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_torch_conv_forward_and_backward(height, width, kernel, stride, padding, channels_last):
    torch.manual_seed(0)
    x = torch.randn(6, 5, height, width)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, kernel, kernel)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    expected = F.conv2d(x, weight, stride=stride, padding=padding)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, weight), upstream)
    out = conv2d(x, weight, stride, padding)
    grads = torch.autograd.grad(out, (x, weight), upstream)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for grad, reference in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, reference, rtol=1e-5, atol=1e-5)
    assert out.shape == expected.shape
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=memory_format)
    assert uses_dense(x, weight) == (height * width <= 4)


def test_taps_that_only_meet_padding_get_a_zero_gradient():
    weight = torch.randn(3, 2, 3, 3, requires_grad=True)
    conv2d(torch.randn(4, 2, 1, 1), weight, 1, 1).sum().backward()
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[1, 1] = True
    assert weight.grad[:, :, ~mask].abs().max() == 0
    assert weight.grad[:, :, mask].abs().min() > 0


def test_small_map_conv2d_is_a_drop_in_nn_conv2d():
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(16, 4, kernel_size=1)
    conv = SmallMapConv2d(16, 4, kernel_size=1)
    conv.load_state_dict(reference.state_dict())
    assert conv.state_dict().keys() == reference.state_dict().keys()
    for size in (1, 2, 6):  # pooled gate input, a tiny map, and the F.conv2d fallback
        x = torch.randn(3, 16, size, size)
        torch.testing.assert_close(conv(x), reference(x))


def test_binary_conv_on_a_one_pixel_map_is_exact_sign_conv():
    conv = BinaryConv2d(8, 6, 3)
    set_temperature(conv, 1e-9)
    x = torch.sign(torch.randn(5, 8, 1, 1))
    expected = F.conv2d(x, torch.sign(conv.weight.detach()), padding=1)
    assert torch.equal(conv.eval()(x), expected)  # integer sums: exact in fp32 whatever the order


def test_tables_built_under_inference_mode_serve_training_later():
    x = torch.randn(2, 4, 2, 1)  # a map shape no other test uses, so its tap table is built here
    weight = torch.randn(3, 4, 3, 3, requires_grad=True)
    with torch.inference_mode():
        conv2d(x, weight.detach(), 1, 1)  # e.g. a KD teacher's forward, or an evaluation, comes first
    conv2d(x, weight, 1, 1).sum().backward()
    expected = torch.autograd.grad(F.conv2d(x, weight, padding=1).sum(), weight)[0]
    torch.testing.assert_close(weight.grad, expected)
