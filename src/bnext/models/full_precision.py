"""Full-precision reference models (teachers, and the fp baseline of the loss-landscape figures)."""

from __future__ import annotations

import torch
from torch import nn

from bnext.models.registry import register_model
from bnext.models.resnet18_layout import LAYOUT_OPTIONS, ResNet18Layout
from bnext.nn.baseline_blocks import fp_downsample
from bnext.nn.small_map import SmallMapConv2d


class BasicBlock(nn.Module):
    """The ResNet basic block: 3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut, ReLU.

    The convs run as matrix products on tiny maps (``SmallMapConv2d``): the last stage of a
    small-image teacher works on 2x2 maps."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = SmallMapConv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = SmallMapConv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = fp_downsample(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))


@register_model(options=LAYOUT_OPTIONS)
def resnet18_fp(num_classes: int = 1000, **kwargs: object) -> ResNet18Layout:
    """Full-precision ResNet-18 (same stems as the binary ResNet-18s; ``width_multiplier`` for small teachers)."""
    return ResNet18Layout(BasicBlock, num_classes, head_prelu=False, **kwargs)
