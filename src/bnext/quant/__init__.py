"""Post-training quantization of the fp layers BNext keeps (stem, SE branch, classifier)."""

from bnext.quant.apply import calibrate, quantizable_parts, quantize_model
from bnext.quant.finetune import finetune_quantized
from bnext.quant.layers import QuantizedConv2d, QuantizedLinear
from bnext.quant.quantizers import fake_quantize, fake_quantize_weight, quantize_weight
from bnext.quant.spec import BitWidths, parse_quant_config

__all__ = [
    "BitWidths",
    "QuantizedConv2d",
    "QuantizedLinear",
    "calibrate",
    "fake_quantize",
    "fake_quantize_weight",
    "finetune_quantized",
    "parse_quant_config",
    "quantizable_parts",
    "quantize_model",
    "quantize_weight",
]
