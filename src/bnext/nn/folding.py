"""Folding an eval-mode BatchNorm into a per-channel affine map (for export and the fused runtime)."""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``norm(x) == scale * x + shift`` in eval mode."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias.detach() - norm.running_mean * scale
