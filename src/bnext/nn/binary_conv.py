"""Binary convolution with latent weights and progressive binarization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LATENT_CLIP = 1.5
"""Latent weights are clamped to [-LATENT_CLIP, LATENT_CLIP] in training."""


class BinaryConv2d(nn.Module):
    """Conv whose weights are binarized in the forward pass.

    Latent fp32 weights start at N(0, 0.001^2). The forward weight is
    ``clamp(w / T, -1, 1)`` with ``T`` the ``temperature`` buffer (1 at start,
    decayed per epoch by the trainer), and exactly ``sign(w)`` once
    ``T < sign_below``. The gradient goes straight through to ``w``. There is no
    per-channel scale: the BatchNorm that follows absorbs it.

    ``scale_mode="mean_abs"`` multiplies the binary weight by its per-output-channel
    mean |w| (XNOR / Bi-Real style), used only by baselines.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        sign_below: float = 1e-7,
        scale_mode: str = "none",
        init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        if scale_mode not in ("none", "mean_abs"):
            raise ValueError(f"scale_mode must be 'none' or 'mean_abs', got {scale_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.sign_below = sign_below
        self.scale_mode = scale_mode
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) * init_std)
        self.register_buffer("temperature", torch.ones(1))

    def binary_weight(self) -> torch.Tensor:
        """The weight the forward pass uses (with a straight-through gradient in training)."""
        latent = self.weight
        # A tensor-valued choice (no Python branch on the buffer): no host sync per layer on
        # GPUs and no graph break under torch.compile.
        soft = (latent / self.temperature.clamp(min=1e-8)).clamp(-1, 1)
        binary = torch.where(self.temperature < self.sign_below, torch.sign(latent), soft)
        if self.scale_mode == "mean_abs":
            binary = binary * latent.abs().mean(dim=(1, 2, 3), keepdim=True).detach()
        if self.training:
            return (binary - latent).detach() + latent
        return binary

    def is_binary(self) -> bool:
        """True once the forward weight is exactly sign(w) (temperature below threshold)."""
        return float(self.temperature) < self.sign_below

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.weight.clamp_(-LATENT_CLIP, LATENT_CLIP)
        return F.conv2d(x, self.binary_weight(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, scale_mode={self.scale_mode}"
        )
