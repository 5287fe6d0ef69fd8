"""Binary primitives: STE, latent clamp, progressive binarization, temperature helpers."""

import torch

from bnext.nn import (
    LATENT_CLIP,
    BinaryConv2d,
    HardSign,
    LearnableBias,
    decay_temperature,
    get_temperature,
    set_temperature,
)
from bnext.nn.sign import approx_sign_ste, sign_ste


def test_ste_gradient_passes_inside_and_is_zero_outside_clip():
    x = torch.tensor([-3.0, -1.6, -1.4, -0.2, 0.3, 1.4, 1.6, 4.0], requires_grad=True)
    y = HardSign()(x)
    assert torch.equal(y, torch.sign(x.detach()))
    y.sum().backward()
    expected = (x.detach().abs() <= 1.5).float()
    assert torch.equal(x.grad, expected)


def test_sign_ste_with_other_clip():
    x = torch.tensor([-1.2, -0.5, 0.5, 1.2], requires_grad=True)
    sign_ste(x, clip=1.0).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_approx_sign_gradient_is_bireal_piecewise_linear():
    x = torch.tensor([-1.5, -0.5, 0.25, 0.75, 2.0], requires_grad=True)
    approx_sign_ste(x).sum().backward()
    # d/dx of the ApproxSign: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere.
    assert torch.allclose(x.grad, torch.tensor([0.0, 1.0, 1.5, 0.5, 0.0]))


def test_learnable_bias_shifts_per_channel():
    shift = LearnableBias(3)
    with torch.no_grad():
        shift.bias.copy_(torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1))
    out = shift(torch.zeros(2, 3, 4, 4))
    assert torch.equal(out[:, 1], torch.full((2, 4, 4), -2.0))


def test_latent_weights_stay_in_clip_range_during_training():
    conv = BinaryConv2d(4, 8, 3)
    optimizer = torch.optim.SGD(conv.parameters(), lr=100.0)
    for _ in range(3):
        loss = conv(torch.randn(2, 4, 6, 6)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        conv(torch.randn(1, 4, 6, 6))  # the clamp happens at the start of a training forward
        assert conv.weight.abs().max() <= LATENT_CLIP


def test_forward_weight_is_exact_sign_below_threshold():
    conv = BinaryConv2d(5, 7, 3)
    set_temperature(conv, 1e-8)
    for mode in (True, False):
        conv.train(mode)
        weight = conv.binary_weight()
        assert torch.equal(weight, torch.sign(conv.weight.detach()))
    x = torch.randn(2, 5, 9, 9)
    expected = torch.nn.functional.conv2d(x, torch.sign(conv.weight.detach()), padding=1)
    torch.testing.assert_close(conv.eval()(x), expected)


def test_progressive_weight_is_clamped_ratio_above_threshold():
    conv = BinaryConv2d(2, 2, 1).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.05, -0.2, 0.5, 1.2]).view(2, 2, 1, 1))
    set_temperature(conv, 0.25)
    torch.testing.assert_close(conv.binary_weight().flatten(), torch.tensor([0.2, -0.8, 1.0, 1.0]))


def test_weight_gradient_is_straight_through():
    conv = BinaryConv2d(3, 4, 3)
    set_temperature(conv, 1e-9)
    x = torch.randn(2, 3, 5, 5)
    conv(x).sum().backward()
    reference_weight = torch.sign(conv.weight.detach()).requires_grad_(True)
    torch.nn.functional.conv2d(x, reference_weight, padding=1).sum().backward()
    torch.testing.assert_close(conv.weight.grad, reference_weight.grad)


def test_temperature_helpers_cover_every_binarizer():
    model = torch.nn.Sequential(HardSign(), BinaryConv2d(2, 2), HardSign(), BinaryConv2d(2, 2))
    assert get_temperature(model) == 1.0
    assert abs(decay_temperature(model, 0.9) - 0.9) < 1e-7
    assert abs(decay_temperature(model, 0.5) - 0.45) < 1e-7
    temperatures = [float(m.temperature) for m in model]
    assert all(abs(t - 0.45) < 1e-7 for t in temperatures)
    set_temperature(model, 1.0)
    assert all(float(m.temperature) == 1.0 for m in model)
