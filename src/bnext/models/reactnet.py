"""ReActNet-A (Liu et al. 2020): the MobileNetV1-like binary baseline BNext builds on."""

from __future__ import annotations

import torch
from torch import nn

from bnext.models.bnext import WIDTHS
from bnext.models.input_size import check_input
from bnext.models.registry import POSITIVE_INT, register_model
from bnext.nn.baseline_blocks import ReActBlock


class ReActNetA(nn.Module):
    """Stem conv + BN, ReActNet blocks with BNext-Tiny's widths, pool, FC."""

    def __init__(self, num_classes: int = 1000, *, stem_stride: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        widths = WIDTHS["tiny"]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.total_stride = stem_stride  # times each block's stride
        blocks = []
        for index in range(1, len(widths)):
            new_stage = widths[index] != widths[index - 1] and widths[index] != widths[1]
            self.total_stride *= 2 if new_stage else 1
            blocks.append(ReActBlock(widths[index - 1], widths[index], 2 if new_stage else 1))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.total_stride, "ReActNetA")
        x = self.blocks(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model(options={"stem_stride": POSITIVE_INT, "in_channels": POSITIVE_INT})
def reactnet_a(num_classes: int = 1000, **kwargs: object) -> ReActNetA:
    """ReActNet-A (69.4% ImageNet top-1 in the paper's Table 2)."""
    return ReActNetA(num_classes, **kwargs)
