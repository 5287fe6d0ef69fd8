"""BNext basic blocks: a 3x3 token mixer followed by a 1x1 (or 3x3) binary FFN."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnext.nn.info_rcp import BinaryUnit


def concat_outputs(units: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """The units' outputs on ``x`` concatenated along channels; one unit's output as it is (no copy)."""
    if len(units) == 1:
        return units[0](x)
    return torch.cat([unit(x) for unit in units], dim=1)


class BNextBlock(nn.Module):
    """3x3 unit (ELM-Attention or plain) then 1x1 binary FFN units.

    When the block doubles the channels, two independent 1x1 FFN units read the
    same input and their outputs are concatenated: the width grows without any
    full-precision 1x1 downsample conv. ``unit_options`` (``recoupling``,
    ``input_quantizer``, ``weight_quantizer``) go to every :class:`BinaryUnit`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, elm_attention: bool = True, **unit_options: Any
    ) -> None:
        super().__init__()
        if out_channels % in_channels:
            raise ValueError(f"out_channels ({out_channels}) must be a multiple of in_channels ({in_channels})")
        self.mixer = BinaryUnit(in_channels, in_channels, 3, stride, elm_attention=elm_attention, **unit_options)
        self.ffn = nn.ModuleList(
            BinaryUnit(in_channels, in_channels, 1, **unit_options) for _ in range(out_channels // in_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return concat_outputs(self.ffn, self.mixer(x))


class BNext18Block(nn.Module):
    """BNext-18 block (ResNet-18 layout): ELM-Attention 3x3 unit then a plain 3x3 unit.

    ``elm_attention=False`` / ``recoupling=False`` remove the two modules (paper Fig. 6 ablation).

    A stride or width change goes through the fp downsample (2x2 avg pool, 1x1
    conv, BN) on the residual, as in the authors' BNext-18. ``unit_options`` go to both
    units; the weight quantizer defaults to ``temperature_bnext18`` (exact sign below
    T = 1e-5, as the authors' BNext-18 code; BNext: 1e-7).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, elm_attention: bool = True, **unit_options: Any
    ) -> None:
        super().__init__()
        unit_options = {"weight_quantizer": "temperature_bnext18", **unit_options}
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride),
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.mixer = BinaryUnit(
            in_channels, out_channels, 3, stride, elm_attention=elm_attention, shortcut=downsample,
            mix_with_residual=True, **unit_options,
        )  # fmt: skip
        self.ffn = BinaryUnit(out_channels, out_channels, 3, **unit_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.mixer(x))
