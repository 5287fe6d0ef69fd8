"""BNext basic blocks: a 3x3 token mixer followed by a 1x1 (or 3x3) binary FFN."""

from __future__ import annotations

import torch
from torch import nn

from bnext.nn.info_rcp import BinaryUnit


class BNextBlock(nn.Module):
    """3x3 unit (ELM-Attention or plain) then 1x1 binary FFN units.

    When the block doubles the channels, two independent 1x1 FFN units read the
    same input and their outputs are concatenated: the width grows without any
    full-precision 1x1 downsample conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        elm_attention: bool = True,
        recoupling: bool = True,
        input_quantizer: str = "hard_sign",
        weight_quantizer: str = "temperature",
    ) -> None:
        super().__init__()
        if out_channels % in_channels:
            raise ValueError(f"out_channels ({out_channels}) must be a multiple of in_channels ({in_channels})")
        quantizers = {"input_quantizer": input_quantizer, "weight_quantizer": weight_quantizer}
        self.mixer = BinaryUnit(
            in_channels, in_channels, 3, stride, recoupling=recoupling, elm_attention=elm_attention, **quantizers
        )
        self.ffn = nn.ModuleList(
            BinaryUnit(in_channels, in_channels, 1, recoupling=recoupling, **quantizers)
            for _ in range(out_channels // in_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x)
        return torch.cat([unit(x) for unit in self.ffn], dim=1)


class BNext18Block(nn.Module):
    """BNext-18 block (ResNet-18 layout): ELM-Attention 3x3 unit then a plain 3x3 unit.

    ``elm_attention=False`` / ``recoupling=False`` remove the two modules (paper Fig. 6 ablation).

    A stride or width change goes through the fp downsample (2x2 avg pool, 1x1
    conv, BN) on the residual, as in the authors' BNext-18.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        elm_attention: bool = True,
        recoupling: bool = True,
        input_quantizer: str = "hard_sign",
        weight_quantizer: str = "temperature_bnext18",
    ) -> None:
        super().__init__()
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride),
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        # The authors' BNext-18 switches to exact sign at T < 1e-5 (BNext: 1e-7): "temperature_bnext18".
        quantizers = {"input_quantizer": input_quantizer, "weight_quantizer": weight_quantizer}
        self.mixer = BinaryUnit(
            in_channels,
            out_channels,
            3,
            stride,
            recoupling=recoupling,
            elm_attention=elm_attention,
            shortcut=downsample,
            mix_with_residual=True,
            **quantizers,
        )
        self.ffn = BinaryUnit(out_channels, out_channels, 3, recoupling=recoupling, **quantizers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.mixer(x))
