"""Exponential moving average of the weights (floating-point tensors; buffers copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_value.dtype.is_floating_point and ema_value.ndim > 0 and ema_value.numel() > 1:
                ema_value.lerp_(value, 1 - self.decay)
            else:
                ema_value.copy_(value)
