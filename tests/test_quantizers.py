"""Quantizers as arguments: the registry, each STE's gradient against its formula, and models configured by name."""

import math

import pytest
import torch

from bnext.errors import UserError
from bnext.models import create_model
from bnext.nn import BinaryConv2d
from bnext.nn.info_rcp import BinaryUnit
from bnext.nn.quantizers import (
    BNEXT18_EXACT_SIGN_BELOW,
    EXACT_SIGN_BELOW,
    SwishSign,
    TemperatureBinarizer,
    activation_quantizer,
    list_quantizers,
    register_activation_quantizer,
    weight_quantizer,
)


def grad_of(quantizer, x):
    x = x.clone().requires_grad_()
    y = quantizer(x)
    y.sum().backward()
    return y.detach(), x.grad


def test_registry_lists_and_refuses_unknown_names():
    names = list_quantizers()
    assert {"hard_sign", "ste_sign", "approx_sign", "swish_sign"} <= set(names["activation"])
    assert {"temperature", "temperature_bnext18", "sign", "scaled_sign"} <= set(names["weight"])
    with pytest.raises(UserError, match="unknown activation quantizer 'signum'"):
        activation_quantizer("signum")
    with pytest.raises(UserError, match="unknown weight quantizer"):
        weight_quantizer("ternary")
    module = SwishSign(2.0)
    assert activation_quantizer(module) is module  # a module passes through


@pytest.mark.parametrize(("name", "clip"), [("hard_sign", 1.5), ("ste_sign", 1.0)])
def test_clipped_ste_signs(name, clip):
    x = torch.tensor([-2.0, -1.2, -0.3, 0.4, 0.9, 1.3, 3.0])
    y, grad = grad_of(activation_quantizer(name), x)
    assert torch.equal(y, torch.sign(x))
    assert torch.equal(grad, (x.abs() <= clip).float())


def test_swish_sign_gradient_is_the_swish_sign_derivative():
    beta = 5.0
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    y, grad = grad_of(SwishSign(beta), x)
    assert torch.equal(y, torch.sign(x))
    # Closed form from BNN+: beta * (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x)).
    expected = beta * (2 - beta * x * torch.tanh(beta * x / 2)) / (1 + torch.cosh(beta * x))
    torch.testing.assert_close(grad, expected)


def test_temperature_binarizer_thresholds_live_in_one_place():
    latent = torch.tensor([[-0.3, 0.001, 0.5]]).view(3, 1, 1, 1)
    binarizer = TemperatureBinarizer().eval()
    assert binarizer.sign_below == EXACT_SIGN_BELOW == 1e-7
    assert weight_quantizer("temperature_bnext18").sign_below == BNEXT18_EXACT_SIGN_BELOW == 1e-5
    soft = binarizer(latent, torch.tensor([0.01]))
    torch.testing.assert_close(soft.flatten(), torch.tensor([-1.0, 0.1, 1.0]))
    assert torch.equal(binarizer(latent, torch.tensor([1e-8])), torch.sign(latent))
    scaled = weight_quantizer("scaled_sign").eval()(latent, torch.ones(1))
    assert scaled.flatten().tolist() == pytest.approx([-0.3, 0.001, 0.5])  # sign * mean|w| per output channel
    assert weight_quantizer("sign").sign_below == math.inf


def test_models_take_quantizers_by_name():
    model = create_model("bnext_tiny", num_classes=4, width_multiplier=0.125, input_quantizer="approx_sign")
    units = [m for m in model.modules() if isinstance(m, BinaryUnit)]
    assert all(type(u.main_branch_modules().sign).__name__ == "ApproxSign" for u in units)
    plain = create_model("bnext_tiny", num_classes=4, width_multiplier=0.125)
    params = {name: p.shape for name, p in model.named_parameters()}
    assert params == {name: p.shape for name, p in plain.named_parameters()}  # same parameters, other gradient
    bnext18 = create_model("bnext18", num_classes=4, width_multiplier=0.125)
    convs = [m for m in bnext18.modules() if isinstance(m, BinaryConv2d)]
    assert all(c.weight_quantizer.sign_below == BNEXT18_EXACT_SIGN_BELOW for c in convs)
    binarynet = create_model("binarynet18", num_classes=4, width_multiplier=0.125)
    assert all(math.isinf(m.weight_quantizer.sign_below) for m in binarynet.modules() if isinstance(m, BinaryConv2d))


def test_a_registered_quantizer_is_usable_by_name():
    @register_activation_quantizer("test_tanh_sign")
    class TanhSign(torch.nn.Module):
        def forward(self, x):
            return (torch.sign(x) - torch.tanh(x)).detach() + torch.tanh(x)

    unit = BinaryUnit(8, 8, 3, input_quantizer="test_tanh_sign")
    assert isinstance(unit.main_branch_modules().sign, TanhSign)
    assert unit(torch.randn(2, 8, 4, 4)).shape == (2, 8, 4, 4)
