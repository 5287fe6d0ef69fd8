"""Conv and linear layers with fake-quantized weights and inputs (calibrated activation ranges)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnext.errors import UserError
from bnext.quant.quantizers import fake_quantize, fake_quantize_weight, quantize_weight
from bnext.quant.spec import FULL_PRECISION, BitWidths


class QuantizedMixin:
    """Shared state: bit widths, the calibrated input range, and the calibration switch.

    ``weight_bits`` (None when fp) is what ``bnext.analysis.profile`` reads to count
    the layer's MACs as QOPs and its weights at their bit width.
    """

    weight: nn.Parameter

    def setup_quantization(self, bits: BitWidths) -> None:
        self.weight_bits = None if bits.weight == FULL_PRECISION else bits.weight
        self.activation_bits = None if bits.activation == FULL_PRECISION else bits.activation
        self.register_buffer("input_min", torch.tensor(float("inf")))
        self.register_buffer("input_max", torch.tensor(float("-inf")))
        self.calibrating = False

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_bits is None:
            return x
        if self.calibrating:
            with torch.no_grad():
                self.input_min.copy_(torch.minimum(self.input_min, x.min()))
                self.input_max.copy_(torch.maximum(self.input_max, x.max()))
            return x
        if not torch.isfinite(self.input_min):
            raise UserError("quantized layer has no calibrated input range: run bnext.quant.calibrate first")
        return fake_quantize(x, self.input_min, self.input_max, self.activation_bits)

    def quantized_weight(self) -> torch.Tensor:
        if self.weight_bits is None:
            return self.weight
        return fake_quantize_weight(self.weight, self.weight_bits)

    def integer_weight(self) -> dict[str, torch.Tensor]:
        """The stored integer form (uint8 codes + per-channel alpha, beta, scale) for deployment."""
        if self.weight_bits is None:
            raise ValueError("this layer keeps fp32 weights")
        parts = quantize_weight(self.weight.detach(), self.weight_bits)
        parts["codes"] = parts["codes"].to(torch.uint8).reshape(self.weight.shape)
        return parts

    def load_integer_weight(
        self, codes: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, scale: torch.Tensor
    ) -> None:
        """Set the weight from its integer form, ``(codes / alpha + beta) * scale`` per output channel.

        The result already lies on the quantization grid, so the layer stops fake-quantizing
        its weight (the inverse of :meth:`integer_weight`, as a packed model loads it).
        """
        weight = (codes.reshape(codes.shape[0], -1).float() / alpha + beta) * scale
        with torch.no_grad():
            self.weight.copy_(weight.reshape(self.weight.shape))
        self.weight_bits = None


class QuantizedConv2d(nn.Conv2d, QuantizedMixin):
    """nn.Conv2d whose weight and input are fake-quantized."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, bits: BitWidths) -> QuantizedConv2d:
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        layer.load_state_dict(conv.state_dict())
        layer.setup_quantization(bits)
        return layer.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            self.quantized_input(x),
            self.quantized_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


class QuantizedLinear(nn.Linear, QuantizedMixin):
    """nn.Linear whose weight and input are fake-quantized."""

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: BitWidths) -> QuantizedLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        layer.load_state_dict(linear.state_dict())
        layer.setup_quantization(bits)
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)
