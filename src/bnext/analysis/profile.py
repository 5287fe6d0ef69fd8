"""Cost accounting of a model (paper Table 2): parameters, size, BOPs, FLOPs, OPs, binarization degree.

BOPs are the binary multiply-accumulates of binary convs; FLOPs the
multiply-accumulates of full-precision convs and linears (BN, PReLU, pooling
and element-wise ops are left out, as the paper does); OPs = BOPs / 64 + QOPs / 8
+ FLOPs. Layers quantized after training (``bnext.quant``) count as QOPs instead
of FLOPs, and their weights at their bit width. The QOPs / 8 term is what paper
Table 2's PTQ rows imply (e.g. BNext-T: 4.82e9 / 64 + 13.4e6 / 8 = 0.77e8 OPs).
Counted for one image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from bnext.nn.binary_conv import BinaryConv2d
from bnext.quant.apply import observing_inputs

BOPS_PER_OP = 64
QOPS_PER_OP = 8
MIB = 2**20


@dataclass
class LayerCost:
    """Cost of one conv or linear layer."""

    name: str
    kind: str  # "binary", "fp" or "int<N>"
    shape: str
    params: int
    macs: int


@dataclass
class ModelCost:
    """Totals over a model; ``layers`` lists the convs and linears in call order."""

    params_fp: int
    params_binary: int
    params_quantized_bits: int
    size_mib: float
    bops: int
    flops: int
    qops: int
    ops: float
    binarization_degree: float
    layers: list[LayerCost] = field(default_factory=list)

    def as_dict(self, with_layers: bool = False) -> dict:
        data = asdict(self)
        if not with_layers:
            data.pop("layers")
        return data


def _weight_bits(module: nn.Module) -> int | None:
    """Bit width of a post-training-quantized layer's weights, or None for an fp layer."""
    bits = getattr(module, "weight_bits", None)
    return int(bits) if bits is not None else None


def profile_model(model: nn.Module, input_size: int = 224, in_channels: int = 3) -> ModelCost:
    """Count costs by running one image of ``input_size`` through ``model``."""
    layers: list[LayerCost] = []
    names = {module: name for name, module in model.named_modules()}
    counted: set[nn.Module] = set()

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features * (output.numel() // module.out_features)
            shape = f"{module.in_features}->{module.out_features}"
        else:
            weight = module.weight
            macs = output.numel() * weight.shape[1] * weight.shape[2] * weight.shape[3]
            shape = f"{weight.shape[1]}->{weight.shape[0]} k{weight.shape[2]} s{module.stride}"
        if isinstance(module, BinaryConv2d):
            kind = "binary"
        else:
            bits = _weight_bits(module)
            kind = f"int{bits}" if bits is not None else "fp"
        counted.add(module)
        layers.append(LayerCost(names[module], kind, shape, module.weight.numel(), macs))

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (BinaryConv2d, nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), observing_inputs(model):  # counting needs no calibrated ranges
            model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    binary_ids = {id(m.weight) for m in model.modules() if isinstance(m, BinaryConv2d)}
    quantized_bits = {
        id(p): _weight_bits(m) for m in model.modules() if _weight_bits(m) is not None for p in (m.weight,)
    }
    params_binary = params_fp = bits_quantized = 0
    for p in model.parameters():
        if id(p) in binary_ids:
            params_binary += p.numel()
        elif id(p) in quantized_bits:
            bits_quantized += p.numel() * quantized_bits[id(p)]
        else:
            params_fp += p.numel()
    size_bits = params_binary + 32 * params_fp + bits_quantized
    bops = sum(layer.macs for layer in layers if layer.kind == "binary")
    flops = sum(layer.macs for layer in layers if layer.kind == "fp")
    qops = sum(layer.macs for layer in layers if layer.kind.startswith("int"))
    ops = bops / BOPS_PER_OP + qops / QOPS_PER_OP + flops
    return ModelCost(
        params_fp=params_fp,
        params_binary=params_binary,
        params_quantized_bits=bits_quantized,
        size_mib=size_bits / 8 / MIB,
        bops=bops,
        flops=flops,
        qops=qops,
        ops=ops,
        binarization_degree=(bops / BOPS_PER_OP) / ops if ops else 0.0,
        layers=layers,
    )
