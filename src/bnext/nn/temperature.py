"""Model-wide helpers for the progressive-binarization temperature."""

from __future__ import annotations

from torch import nn

from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.sign import HardSign


def _binarizers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BinaryConv2d, HardSign))]


def has_temperature(model: nn.Module) -> bool:
    """True when ``model`` has binarizers driven by a temperature (an fp model has none)."""
    return bool(_binarizers(model))


def set_temperature(model: nn.Module, value: float) -> None:
    """Set the temperature of every binary conv and hard sign in ``model``."""
    for module in _binarizers(model):
        module.temperature.fill_(value)


def decay_temperature(model: nn.Module, factor: float = 0.9) -> float:
    """Multiply every temperature by ``factor`` (the paper: 0.9 per epoch); return the new value."""
    for module in _binarizers(model):
        module.temperature.mul_(factor)
    return get_temperature(model)


def get_temperature(model: nn.Module) -> float:
    """The temperature of the model's binary convs (1.0 for a model without any)."""
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            return float(module.temperature)
    return 1.0
