"""Binary convolution with latent weights and a pluggable weight quantizer (progressive binarization by default)."""

from __future__ import annotations

import torch
from torch import nn

from bnext.nn import small_map
from bnext.nn.quantizers import weight_quantizer as make_weight_quantizer

LATENT_CLIP = 1.5
"""Latent weights are clamped to [-LATENT_CLIP, LATENT_CLIP] in training (the default kernel constraint)."""


class BinaryConv2d(nn.Module):
    """Conv whose weights are binarized in the forward pass by ``weight_quantizer``.

    Latent fp32 weights start at N(0, ``init_std``^2). The ``temperature`` buffer
    (1 at start, decayed per epoch by the trainer) is handed to the quantizer. The
    default, ``"temperature"``, is BNext's: ``clamp(w / T, -1, 1)``, exactly ``sign(w)``
    once ``T`` falls below its threshold, with the gradient going straight through to
    ``w``. There is no per-channel scale: the BatchNorm that follows absorbs it
    (``"scaled_sign"`` multiplies by mean |w|, for the baselines). See
    ``bnext.nn.quantizers`` for the registered names. ``latent_clip`` is the kernel
    constraint applied before every training step (None: no clamp).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        weight_quantizer: str | nn.Module = "temperature",
        latent_clip: float | None = LATENT_CLIP,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.latent_clip = latent_clip
        self.weight_quantizer = make_weight_quantizer(weight_quantizer)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) * init_std)
        self.register_buffer("temperature", torch.ones(1))

    def binary_weight(self) -> torch.Tensor:
        """The weight the forward pass uses (with the quantizer's straight-through gradient in training)."""
        return self.weight_quantizer(self.weight, self.temperature)

    def is_binary(self) -> bool:
        """True once the forward weight is exactly sign(w) (a quantizer without ``is_exact`` always is)."""
        is_exact = getattr(self.weight_quantizer, "is_exact", None)
        return True if is_exact is None else bool(is_exact(self.temperature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.latent_clip is not None:
            with torch.no_grad():
                self.weight.clamp_(-self.latent_clip, self.latent_clip)
        return small_map.conv2d(x, self.binary_weight(), self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
