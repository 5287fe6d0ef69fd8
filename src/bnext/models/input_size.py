"""A clear error for inputs a model cannot take: wrong rank, channel count, or sides its strides cannot halve."""

from __future__ import annotations

import torch

from bnext.errors import UserError


def check_input(x: torch.Tensor, in_channels: int, total_stride: int, model: str) -> None:
    """Raise unless ``x`` is (N, ``in_channels``, H, W) with H and W multiples of ``total_stride``.

    A wrong shape would otherwise fail deep inside the first conv, and sides that are not
    multiples of the total stride deep inside a block, where the 2x2 average-pool shortcuts
    and the strided binary convs disagree on odd sizes (e.g. 7 -> 3 vs 4).
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise UserError(
            f"{model} takes images of shape (N, {in_channels}, H, W), got {tuple(x.shape)}: "
            f"batch the images (x.unsqueeze(0) for one) and give them {in_channels} channels"
        )
    height, width = x.shape[-2:]
    if height % total_stride or width % total_stride:
        suggestion = max(total_stride, round(width / total_stride) * total_stride)
        raise UserError(
            f"{model} needs input height and width divisible by {total_stride} (its total stride), got "
            f"{height}x{width}: resize or pad the images (e.g. data.image_size={suggestion})"
        )
