"""The Info-RCP binary processing unit (paper Fig. 3c) and its ELM-Attention variant (Fig. 4)."""

from __future__ import annotations

import torch
from torch import nn

from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.sign import HardSign, LearnableBias


class SqueezeExpand(nn.Module):
    """Sigmoid gate from global context: pool -> 1x1 conv (C -> C/ratio) -> ReLU -> 1x1 conv -> sigmoid."""

    def __init__(self, channels: int, out_channels: int, ratio: int = 8) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // ratio, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // ratio, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x))


class BinaryUnit(nn.Module):
    """One binary conv unit of BNext.

    Main branch: move -> hard sign -> binary conv -> BN -> PReLU, giving ``y``.
    With ``recoupling`` (Info-RCP) the input and ``y`` are mixed by a learnable
    per-channel scale ``s`` in [0, 1] and a squeeze-and-expand gate of the mix
    rescales ``y``: ``y = SE(s * x + (1 - s) * y) * y``.

    Residual paths (``shortcut`` is identity, a 2x2 average pool, or the fp
    downsample of BNext-18):

    * plain unit: ``out = BN(y) + shortcut(x)`` (``y + shortcut(x)`` without Info-RCP);
    * ``elm_attention``: ``r = shortcut(PReLU(x))``, ``out = BN(y * r) + r``, the
      element-wise product with ``r`` being the ELM-Attention.

    ``mix_with_residual`` mixes ``r`` instead of ``shortcut(x)`` into the gate
    input, as the authors' BNext-18 does.

    ``activation1`` is unused by plain units and ``norm2`` by plain units without
    Info-RCP; both exist in the authors' model, so they are kept for its
    parameter counts and checkpoints.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        recoupling: bool = True,
        elm_attention: bool = False,
        shortcut: nn.Module | None = None,
        mix_with_residual: bool = False,
        sign_below: float = 1e-7,
    ) -> None:
        super().__init__()
        if shortcut is None and (stride != 1 or in_channels != out_channels):
            if in_channels != out_channels:
                raise ValueError("a unit that changes the channel count needs an explicit shortcut module")
            shortcut = nn.AvgPool2d(2, 2)
        self.recoupling = recoupling
        self.elm_attention = elm_attention
        self.mix_with_residual = mix_with_residual
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

        self.move = LearnableBias(in_channels)
        self.binary_activation = HardSign(clip=1.5)
        self.binary_conv = BinaryConv2d(in_channels, out_channels, kernel_size, stride, sign_below=sign_below)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.activation1 = nn.PReLU(in_channels)
        self.activation2 = nn.PReLU(out_channels)
        if recoupling:
            self.se = SqueezeExpand(out_channels, out_channels)
            self.scale = nn.Parameter(torch.full((1, out_channels, 1, 1), 0.5))
        # Frozen where the forward never reads them (DDP requires every trainable
        # parameter to receive a gradient).
        if not elm_attention:
            self.activation1.requires_grad_(False)
            if not recoupling:
                self.norm2.requires_grad_(False)

    def main_branch(self, x: torch.Tensor) -> torch.Tensor:
        """move -> sign -> binary conv -> BN -> PReLU."""
        x = self.binary_conv(self.binary_activation(self.move(x)))
        return self.activation2(self.norm1(x))

    def recouple(self, source: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Info-RCP: gate ``y`` by a squeeze-and-expand of the scale-mixed input and output."""
        if self.training:
            with torch.no_grad():
                self.scale.clamp_(0, 1)
        # Eval uses the clamped scale too (the authors' 1x1 unit clamps it in eval).
        scale = self.scale.clamp(0, 1)
        return self.se(scale * source + (1 - scale) * y) * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main_branch(x)
        if self.elm_attention:
            residual = self.shortcut(self.activation1(x))
            if self.recoupling:
                y = self.recouple(residual if self.mix_with_residual else self.shortcut(x), y)
            return self.norm2(y * residual) + residual
        residual = self.shortcut(x)
        if self.recoupling:
            y = self.norm2(self.recouple(residual, y))
        return y + residual
