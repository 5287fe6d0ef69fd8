"""Folding an eval-mode BatchNorm into a per-channel affine map (for export and the fused runtime)."""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``norm(x) == scale * x + shift`` in eval mode."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias.detach() - norm.running_mean * scale


def conv_with_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A float conv computing ``norm(conv(x))`` in eval mode (one op instead of two, for inference)."""
    scale, shift = fold_batchnorm(norm)
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        bias=True, padding_mode=conv.padding_mode,
    )  # fmt: skip
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(shift)
    with torch.no_grad():
        folded.weight.copy_(conv.weight.detach() * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(bias * scale + shift)
    return folded.to(conv.weight.device).eval()
