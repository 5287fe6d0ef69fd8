"""ResNet-18 layout models: BNext-18 and the binary ResNet-18 baselines (BinaryNet, Bi-Real, Real2Binary)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from bnext.models.input_size import check_input
from bnext.models.registry import FLAG, POSITIVE_INT, POSITIVE_NUMBER, QUANTIZER, Option, register_model
from bnext.nn import BNext18Block
from bnext.nn.baseline_blocks import BinaryNetBlock, BiRealBlock

BlockFactory = Callable[[int, int, int], nn.Module]
STAGE_WIDTHS = (64, 128, 256, 512)
LAYOUT_OPTIONS: dict[str, Option] = {  # the keywords every ResNet-18 layout model takes (besides num_classes)
    "stem_stride": Option("1 (32 px inputs) or 2 (ImageNet)", lambda value: type(value) is int and value in (1, 2)),
    "in_channels": POSITIVE_INT,
    "width_multiplier": POSITIVE_NUMBER,
}
BNEXT18_OPTIONS: dict[str, Option] = {
    **LAYOUT_OPTIONS,
    "head_prelu": FLAG,
    "elm_attention": FLAG,
    "recoupling": FLAG,
    "input_quantizer": QUANTIZER,
    "weight_quantizer": QUANTIZER,
}


class ResNet18Layout(nn.Module):
    """Stem, four stages of two blocks (64/128/256/512), optional PReLU, pool, FC.

    ``stem_stride=2`` is the ImageNet stem (7x7/2 conv, BN, 3x3/2 max pool);
    ``stem_stride=1`` the CIFAR stem (3x3/1 conv, BN, no pool), as the authors'
    BNext-18 chooses between them.
    """

    def __init__(
        self,
        block: BlockFactory,
        num_classes: int = 1000,
        *,
        stem_stride: int = 2,
        in_channels: int = 3,
        head_prelu: bool = True,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        widths = [max(8, round(w * width_multiplier / 8) * 8) for w in STAGE_WIDTHS]
        if stem_stride == 2:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        elif stem_stride == 1:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem_stride must be 1 (32 px inputs) or 2 (ImageNet), got {stem_stride}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.total_stride = (4 if stem_stride == 2 else 1) * 8
        in_width = widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            stage = nn.Sequential(block(in_width, width, stride), block(width, width, 1))
            self.add_module(f"layer{index}", stage)
            in_width = width
        self.prelu = nn.PReLU(widths[-1]) if head_prelu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.total_stride, type(self).__name__)
        x = self.maxpool(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(self.layer0(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.prelu(self.forward_features(x)))
        return self.fc(torch.flatten(x, 1))


@register_model(options=BNEXT18_OPTIONS)
def bnext18(num_classes: int = 1000, **kwargs: Any) -> ResNet18Layout:
    """BNext-18: BNext units in ResNet-18 (68.4% ImageNet top-1, 93.6% CIFAR-10).

    ``elm_attention`` / ``recoupling`` switch the two BNext modules off for ablations;
    ``input_quantizer`` / ``weight_quantizer`` name other binarizers (``bnext.nn.quantizers``).
    The other keywords are the layout's (``stem_stride``, ``width_multiplier``).
    """
    unit_keys = ("elm_attention", "recoupling", "input_quantizer", "weight_quantizer")
    block = partial(BNext18Block, **{key: kwargs.pop(key) for key in unit_keys if key in kwargs})
    return ResNet18Layout(block, num_classes, **kwargs)


@register_model(options=LAYOUT_OPTIONS)
def binarynet18(num_classes: int = 1000, **kwargs: object) -> ResNet18Layout:
    """BinaryNet-style ResNet-18: plain sign of weights and activations, no scaling."""
    return ResNet18Layout(BinaryNetBlock, num_classes, head_prelu=False, **kwargs)


@register_model(options=LAYOUT_OPTIONS)
def birealnet18(num_classes: int = 1000, **kwargs: object) -> ResNet18Layout:
    """Bi-Real Net-18: a real shortcut around every binary conv, ApproxSign, mean-|w| scaling."""
    return ResNet18Layout(BiRealBlock, num_classes, head_prelu=False, **kwargs)


@register_model(options=LAYOUT_OPTIONS)
def real2binary18(num_classes: int = 1000, **kwargs: object) -> ResNet18Layout:
    """Real-to-Binary Net-18: Bi-Real units with a data-driven channel gate and PReLU."""
    return ResNet18Layout(partial(BiRealBlock, gated=True), num_classes, head_prelu=False, **kwargs)
