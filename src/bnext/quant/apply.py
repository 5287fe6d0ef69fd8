"""Post-training quantization of a BNext model's remaining fp layers: I (stem), S/E (SE branch), O (classifier).

Binary convs are left untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from bnext.errors import UserError
from bnext.nn.info_rcp import SqueezeExpand
from bnext.quant.layers import QuantizedConv2d, QuantizedLinear, QuantizedMixin
from bnext.quant.spec import BitWidths, parse_quant_config


def quantizable_parts(model: nn.Module) -> dict[str, list[str]]:
    """Module names of the I, S, E and O parts of ``model``."""
    convs = [name for name, m in model.named_modules() if type(m) is nn.Conv2d]
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    squeeze, expand = [], []
    for name, module in model.named_modules():
        if isinstance(module, SqueezeExpand):
            squeeze.append(f"{name}.gate.1")
            expand.append(f"{name}.gate.3")
    if not convs or not linears:
        raise UserError(f"{type(model).__name__} has no fp stem conv or classifier to quantize")
    return {"input": convs[:1], "squeeze": squeeze, "expand": expand, "output": linears[-1:]}


def _replace(model: nn.Module, name: str, bits: BitWidths) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, child)
    maker = QuantizedLinear if isinstance(original, nn.Linear) else QuantizedConv2d
    setattr(parent, child, maker.from_float(original, bits))


def quantize_model(model: nn.Module, config: str | dict[str, BitWidths]) -> nn.Module:
    """Swap the I/S/E/O layers of ``model`` (in place) for fake-quantized ones per ``config``."""
    bits = parse_quant_config(config) if isinstance(config, str) else config
    for part, names in quantizable_parts(model).items():
        for name in names:
            _replace(model, name, bits[part])
    return model


@contextmanager
def observing_inputs(model: nn.Module) -> Iterator[None]:
    """Quantized layers pass inputs through and record their range (calibration, cost counting)."""
    layers = [m for m in model.modules() if isinstance(m, QuantizedMixin)]
    for layer in layers:
        layer.calibrating = True
    try:
        yield
    finally:
        for layer in layers:
            layer.calibrating = False


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Record each quantized layer's input range over ``batches`` (eval mode); then freeze it."""
    for layer in (m for m in model.modules() if isinstance(m, QuantizedMixin)):
        layer.input_min.fill_(float("inf"))
        layer.input_max.fill_(float("-inf"))
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with observing_inputs(model):
            for images in batches:
                model(images)
                seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise UserError("calibration needs at least one batch")
    return seen
