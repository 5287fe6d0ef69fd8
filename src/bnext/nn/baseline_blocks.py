"""Blocks of the baseline BNNs the paper compares against, built from bnext's primitives.

They binarize with sign(w) from the first step (the ``sign`` / ``scaled_sign`` weight
quantizers of ``bnext.nn.quantizers``), as their papers do, instead of BNext's progressive
binarization, and their activations with ``ste_sign`` (BinaryNet) or ``approx_sign``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.blocks import concat_outputs
from bnext.nn.info_rcp import SqueezeExpand
from bnext.nn.quantizers import activation_quantizer
from bnext.nn.sign import LearnableBias


def fp_downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Residual path for a stride or width change: 2x2 avg pool (if strided), 1x1 fp conv, BN."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    layers: list[nn.Module] = [nn.AvgPool2d(2, stride)] if stride != 1 else []
    layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers)


def sign_conv(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, scaled: bool = True
) -> BinaryConv2d:
    """Binary conv that uses sign(w) from the start, optionally with mean-|w| channel scaling."""
    return BinaryConv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        weight_quantizer="scaled_sign" if scaled else "sign",
        init_std=math.sqrt(2.0 / (in_channels * kernel_size * kernel_size)),
    )


class BinaryNetBlock(nn.Module):
    """BinaryNet (Hubara/Courbariaux) in a ResNet-18 block: plain sign, no weight scaling."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.sign = activation_quantizer("ste_sign")
        self.conv1 = sign_conv(in_channels, out_channels, 3, stride, scaled=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = sign_conv(out_channels, out_channels, 3, 1, scaled=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = fp_downsample(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(self.conv1(self.sign(x)))
        y = self.bn2(self.conv2(self.sign(y)))
        return y + self.downsample(x)


class BiRealUnit(nn.Module):
    """Bi-Real Net unit: ApproxSign -> scaled binary conv -> BN, with a real shortcut around every conv.

    ``gated`` adds Real-to-Binary's data-driven channel gate (computed from the
    real-valued input) and a PReLU after the sum.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, gated: bool = False) -> None:
        super().__init__()
        self.sign = activation_quantizer("approx_sign")
        self.conv = sign_conv(in_channels, out_channels, 3, stride)
        self.bn = nn.BatchNorm2d(out_channels)
        self.downsample = fp_downsample(in_channels, out_channels, stride)
        self.gate = SqueezeExpand(in_channels, out_channels) if gated else None
        self.act = nn.PReLU(out_channels) if gated else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.sign(x))
        if self.gate is not None:
            y = y * self.gate(x)
        return self.act(self.bn(y) + self.downsample(x))


class BiRealBlock(nn.Sequential):
    """Two Bi-Real units (the first may stride / widen): a ResNet-18 basic block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, gated: bool = False) -> None:
        super().__init__(
            BiRealUnit(in_channels, out_channels, stride, gated),
            BiRealUnit(out_channels, out_channels, 1, gated),
        )


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, PReLU, shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = LearnableBias(channels)
        self.prelu = nn.PReLU(channels)
        self.shift_out = LearnableBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))


class ReActUnit(nn.Module):
    """ReActNet unit: RSign -> scaled binary conv -> BN, + shortcut, -> RPReLU."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.move = LearnableBias(channels)
        self.sign = activation_quantizer("approx_sign")
        self.conv = sign_conv(channels, channels, kernel_size, stride)
        self.bn = nn.BatchNorm2d(channels)
        self.shortcut = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.act = RPReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.sign(self.move(x)))) + self.shortcut(x))


class ReActBlock(nn.Module):
    """ReActNet-A block: 3x3 unit, then 1x1 unit(s), concatenated when the width doubles."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.mixer = ReActUnit(in_channels, 3, stride)
        self.ffn = nn.ModuleList(ReActUnit(in_channels, 1) for _ in range(out_channels // in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return concat_outputs(self.ffn, self.mixer(x))
