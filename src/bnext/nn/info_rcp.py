"""The Info-RCP binary processing unit (paper Fig. 3c) and its ELM-Attention variant (Fig. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bnext.nn.binary_conv import BinaryConv2d
from bnext.nn.quantizers import activation_quantizer
from bnext.nn.sign import LearnableBias
from bnext.nn.small_map import SmallMapConv2d


class SqueezeExpand(nn.Module):
    """Sigmoid gate from global context: pool -> 1x1 conv (C -> C/ratio) -> ReLU -> 1x1 conv -> sigmoid."""

    def __init__(self, channels: int, out_channels: int, ratio: int = 8) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            SmallMapConv2d(channels, channels // ratio, kernel_size=1),
            nn.ReLU(inplace=True),
            SmallMapConv2d(channels // ratio, out_channels, kernel_size=1),
        )

    @property
    def squeeze_conv(self) -> nn.Module:
        """The C -> C/ratio 1x1 conv (PTQ's "S" layer)."""
        return self.gate[1]

    @property
    def expand_conv(self) -> nn.Module:
        """The C/ratio -> C 1x1 conv (PTQ's "E" layer)."""
        return self.gate[3]

    def replace_convs(self, squeeze: nn.Module, expand: nn.Module) -> None:
        """Swap the two 1x1 convs (e.g. for quantized ones); the state-dict keys stay the same."""
        self.gate[1], self.gate[3] = squeeze, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x))


@dataclass(frozen=True)
class MainBranch:
    """A unit's main branch in order: shift -> sign -> binary conv -> BatchNorm -> PReLU."""

    move: LearnableBias
    sign: nn.Module
    conv: BinaryConv2d
    norm: nn.BatchNorm2d
    activation: nn.PReLU

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.move, self.sign, self.conv, self.norm, self.activation)


@dataclass(frozen=True)
class UnitTail:
    """What a unit computes after its main branch ``y`` (see ``BinaryUnit``), for a fused runtime.

    ``gate`` is None without Info-RCP; ``input_activation`` is None for plain units.
    """

    shortcut: nn.Module
    input_activation: nn.PReLU | None
    gate: SqueezeExpand | None
    mix: torch.Tensor | None  # the clamped Info-RCP scale s, shape (C,)
    mix_with_residual: bool
    norm: nn.BatchNorm2d
    elm_attention: bool


class BinaryUnit(nn.Module):
    """One binary conv unit of BNext.

    Main branch: move -> hard sign -> binary conv -> BN -> PReLU, giving ``y``.
    With ``recoupling`` (Info-RCP) the input and ``y`` are mixed by a learnable
    per-channel scale ``s`` in [0, 1] and a squeeze-and-expand gate of the mix
    rescales ``y``: ``y = SE(s * x + (1 - s) * y) * y``.

    Residual paths (``shortcut`` is identity, a 2x2 average pool, or the fp
    downsample of BNext-18):

    * plain unit: ``out = BN(y) + shortcut(x)`` (``y + shortcut(x)`` without Info-RCP);
    * ``elm_attention``: ``r = shortcut(PReLU(x))``, ``out = BN(y * r) + r``, the
      element-wise product with ``r`` being the ELM-Attention.

    ``mix_with_residual`` mixes ``r`` instead of ``shortcut(x)`` into the gate
    input, as the authors' BNext-18 does.

    ``input_quantizer`` / ``weight_quantizer`` binarize activations and weights (names of
    ``bnext.nn.quantizers`` or modules; BNext's ``hard_sign`` and ``temperature`` by default).

    ``activation1`` is unused by plain units and ``norm2`` by plain units without
    Info-RCP; both exist in the authors' model, so they are kept for its
    parameter counts and checkpoints.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        recoupling: bool = True,
        elm_attention: bool = False,
        shortcut: nn.Module | None = None,
        mix_with_residual: bool = False,
        input_quantizer: str | nn.Module = "hard_sign",
        weight_quantizer: str | nn.Module = "temperature",
    ) -> None:
        super().__init__()
        if shortcut is None and (stride != 1 or in_channels != out_channels):
            if in_channels != out_channels:
                raise ValueError("a unit that changes the channel count needs an explicit shortcut module")
            shortcut = nn.AvgPool2d(2, 2)
        self.recoupling = recoupling
        self.elm_attention = elm_attention
        self.mix_with_residual = mix_with_residual
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

        self.move = LearnableBias(in_channels)
        self.binary_activation = activation_quantizer(input_quantizer)
        self.binary_conv = BinaryConv2d(
            in_channels, out_channels, kernel_size, stride, weight_quantizer=weight_quantizer
        )
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.activation1 = nn.PReLU(in_channels)
        self.activation2 = nn.PReLU(out_channels)
        if recoupling:
            self.se = SqueezeExpand(out_channels, out_channels)
            self.scale = nn.Parameter(torch.full((1, out_channels, 1, 1), 0.5))
        # Frozen where the forward never reads them (DDP requires every trainable
        # parameter to receive a gradient).
        if not elm_attention:
            self.activation1.requires_grad_(False)
            if not recoupling:
                self.norm2.requires_grad_(False)

    # ----------------------------------------------------------------- public interface
    # Export, PTQ and the packed runtime use these, never the attribute names below.
    def main_branch_modules(self) -> MainBranch:
        """The modules of the main branch (what export folds into one packed op)."""
        return MainBranch(self.move, self.binary_activation, self.binary_conv, self.norm1, self.activation2)

    def tail(self) -> UnitTail:
        """The fp part after the main branch: residual, Info-RCP gate and scale, second BatchNorm."""
        return UnitTail(
            shortcut=self.shortcut,
            input_activation=self.activation1 if self.elm_attention else None,
            gate=self.se if self.recoupling else None,
            mix=self.scale.detach().clamp(0, 1).flatten() if self.recoupling else None,
            mix_with_residual=self.mix_with_residual,
            norm=self.norm2,
            elm_attention=self.elm_attention,
        )

    def replace_main_branch(self, op: nn.Module) -> None:
        """Compute the whole main branch with ``op`` (e.g. a packed conv that folds shift, BN and PReLU).

        The replaced modules leave the unit, and so its state dict.
        """
        self.binary_conv = op
        self.move = self.binary_activation = self.norm1 = self.activation2 = nn.Identity()

    def replaced_main_branch(self) -> nn.Module | None:
        """The op given to :meth:`replace_main_branch` (None while the unit has its own main branch)."""
        return None if isinstance(self.binary_conv, BinaryConv2d) else self.binary_conv

    def main_branch(self, x: torch.Tensor) -> torch.Tensor:
        """move -> sign -> binary conv -> BN -> PReLU."""
        x = self.binary_conv(self.binary_activation(self.move(x)))
        return self.activation2(self.norm1(x))

    def recouple(self, source: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Info-RCP: gate ``y`` by a squeeze-and-expand of the scale-mixed input and output."""
        if self.training:
            with torch.no_grad():
                self.scale.clamp_(0, 1)
        # Eval uses the clamped scale too (the authors' 1x1 unit clamps it in eval).
        scale = self.scale.clamp(0, 1)
        return self.se(scale * source + (1 - scale) * y) * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main_branch(x)
        if self.elm_attention:
            residual = self.shortcut(self.activation1(x))
            if self.recoupling:
                y = self.recouple(residual if self.mix_with_residual else self.shortcut(x), y)
            return self.norm2(y * residual) + residual
        residual = self.shortcut(x)
        if self.recoupling:
            y = self.norm2(self.recouple(residual, y))
        return y + residual
