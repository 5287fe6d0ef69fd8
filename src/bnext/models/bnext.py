"""The BNext family (paper section 3): MobileNetV1-like stages of BNext blocks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnext.models.input_size import check_input
from bnext.models.registry import FLAG, POSITIVE_INT, POSITIVE_NUMBER, QUANTIZER, Option, register_model
from bnext.nn import BNextBlock
from bnext.nn.folding import conv_with_batchnorm

WIDTHS: dict[str, list[int]] = {
    # Output width of the stem, then of each block.
    "tiny": [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2,
    "small": [48, 96] + [192] * 2 + [384] * 2 + [768] * 6 + [1536] * 2,
    "middle": [48, 96] + [192] * 4 + [384] * 4 + [768] * 8 + [1536] * 4,
    "large": [64, 128] + [256] * 4 + [512] * 4 + [1024] * 16 + [2048] * 4,
}


class Stem(nn.Module):
    """Full-precision 3x3 conv + BN.

    ``prelu`` is not applied: the authors' stem returns the BN output, but their
    module holds this PReLU, so it stays for their parameter counts and checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.prelu = nn.PReLU(out_channels).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv1(x))

    def fold_batchnorm(self) -> bool:
        """Fold ``bn1`` into ``conv1`` for inference (eval statistics); False, and unchanged, when ``conv1`` is
        not a plain float conv (a quantized one keeps its own arithmetic)."""
        if type(self.conv1) is not nn.Conv2d:
            return False
        self.conv1, self.bn1 = conv_with_batchnorm(self.conv1, self.bn1), nn.Identity()
        return True


class BNext(nn.Module):
    """BNext: stem, binary blocks, PReLU -> global average pool -> FC.

    Stride 2 happens at the first block of every stage after the first. The 3x3
    unit of even-indexed blocks is ELM-Attention, of odd-indexed blocks plain
    (as in the authors' code); ``elm_attention=False`` makes all of them plain and
    ``recoupling=False`` removes Info-RCP (paper Table 4). ``input_quantizer`` /
    ``weight_quantizer`` name the binarizers of ``bnext.nn.quantizers`` (e.g.
    ``input_quantizer="approx_sign"`` for Bi-Real's gradient); these ``unit_options``
    go to every ``BinaryUnit``.
    """

    def __init__(
        self,
        widths: list[int],
        num_classes: int = 1000,
        *,
        stem_stride: int = 2,
        in_channels: int = 3,
        elm_attention: bool = True,
        **unit_options: Any,
    ) -> None:
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.stem = Stem(in_channels, widths[0], stem_stride)
        self.total_stride = stem_stride  # times each block's stride: what the input sides must be multiples of
        blocks = []
        for index in range(1, len(widths)):
            new_stage = widths[index] != widths[index - 1] and widths[index] != widths[1]
            stride = 2 if new_stage else 1
            self.total_stride *= stride
            elm = elm_attention and index % 2 == 0
            blocks.append(BNextBlock(widths[index - 1], widths[index], stride, elm_attention=elm, **unit_options))
        self.blocks = nn.Sequential(*blocks)
        self.prelu = nn.PReLU(widths[-1])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.total_stride, "BNext")
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.prelu(self.forward_features(x)))
        return self.fc(torch.flatten(x, 1))


BNEXT_OPTIONS: dict[str, Option] = {  # the keywords of every BNext size (besides num_classes)
    "width_multiplier": POSITIVE_NUMBER,
    "stem_stride": POSITIVE_INT,
    "in_channels": POSITIVE_INT,
    "elm_attention": FLAG,
    "recoupling": FLAG,
    "input_quantizer": QUANTIZER,
    "weight_quantizer": QUANTIZER,
}


def _bnext(size: str, num_classes: int, width_multiplier: float = 1.0, **kwargs: object) -> BNext:
    widths = [max(8, round(w * width_multiplier / 8) * 8) for w in WIDTHS[size]]
    return BNext(widths, num_classes, **kwargs)


@register_model(options=BNEXT_OPTIONS)
def bnext_tiny(num_classes: int = 1000, **kwargs: object) -> BNext:
    """BNext-T: 72.4% ImageNet top-1 (paper Table 2). ``width_multiplier`` scales every width."""
    return _bnext("tiny", num_classes, **kwargs)


@register_model(options=BNEXT_OPTIONS)
def bnext_small(num_classes: int = 1000, **kwargs: object) -> BNext:
    """BNext-S: 76.1% ImageNet top-1."""
    return _bnext("small", num_classes, **kwargs)


@register_model(options=BNEXT_OPTIONS)
def bnext_middle(num_classes: int = 1000, **kwargs: object) -> BNext:
    """BNext-M: 78.3% ImageNet top-1."""
    return _bnext("middle", num_classes, **kwargs)


@register_model(options=BNEXT_OPTIONS)
def bnext_large(num_classes: int = 1000, **kwargs: object) -> BNext:
    """BNext-L: 80.6% ImageNet top-1."""
    return _bnext("large", num_classes, **kwargs)
