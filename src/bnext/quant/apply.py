"""Post-training quantization of a BNext model's remaining fp layers: I (stem), S/E (SE branch), O (classifier).

Binary convs are left untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn

from bnext.errors import UserError
from bnext.hardware import model_device
from bnext.nn.info_rcp import SqueezeExpand
from bnext.nn.switch import switched
from bnext.quant.layers import QuantizedConv2d, QuantizedLinear, QuantizedMixin
from bnext.quant.spec import BitWidths, parse_quant_config


def quantizable_parts(model: nn.Module) -> dict[str, list[str]]:
    """Module names of the I, S, E and O parts of ``model``."""
    convs = [name for name, m in model.named_modules() if type(m) is nn.Conv2d]
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    names = {id(module): name for name, module in model.named_modules()}
    gates = [m for m in model.modules() if isinstance(m, SqueezeExpand)]
    if not convs or not linears:
        raise UserError(f"{type(model).__name__} has no fp stem conv or classifier to quantize")
    return {
        "input": convs[:1],
        "squeeze": [names[id(gate.squeeze_conv)] for gate in gates],
        "expand": [names[id(gate.expand_conv)] for gate in gates],
        "output": linears[-1:],
    }


def _quantized(layer: nn.Module, bits: BitWidths) -> nn.Module:
    maker = QuantizedLinear if isinstance(layer, nn.Linear) else QuantizedConv2d
    return maker.from_float(layer, bits)


def _replace(model: nn.Module, name: str, bits: BitWidths) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, _quantized(getattr(parent, child), bits))


def quantize_model(model: nn.Module, config: str | dict[str, BitWidths]) -> nn.Module:
    """Swap the I/S/E/O layers of ``model`` (in place) for fake-quantized ones per ``config``.

    The SE gates' convs are swapped through ``SqueezeExpand.replace_convs``; stem and
    classifier are found as the first fp conv and the last linear layer.
    """
    bits = parse_quant_config(config) if isinstance(config, str) else config
    parts = quantizable_parts(model)
    for gate in [m for m in model.modules() if isinstance(m, SqueezeExpand)]:
        gate.replace_convs(_quantized(gate.squeeze_conv, bits["squeeze"]), _quantized(gate.expand_conv, bits["expand"]))
    for part in ("input", "output"):
        for name in parts[part]:
            _replace(model, name, bits[part])
    return model


def observing_inputs(model: nn.Module) -> AbstractContextManager[None]:
    """Quantized layers pass inputs through and record their range (calibration, cost counting)."""
    return switched([m for m in model.modules() if isinstance(m, QuantizedMixin)], "calibrating", True)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Record each quantized layer's input range over ``batches`` (eval mode); then freeze it."""
    for layer in (m for m in model.modules() if isinstance(m, QuantizedMixin)):
        layer.input_min.fill_(float("inf"))
        layer.input_max.fill_(float("-inf"))
    was_training = model.training
    model.eval()
    seen = 0
    device = model_device(model)
    try:
        with observing_inputs(model):
            for images in batches:
                model(images.to(device))
                seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise UserError("calibration needs at least one batch")
    return seen
