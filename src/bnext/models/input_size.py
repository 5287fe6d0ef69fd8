"""A clear error for input sizes a model's strided average-pool shortcuts cannot take."""

from __future__ import annotations

import torch

from bnext.errors import UserError


def check_input_size(x: torch.Tensor, multiple: int, model: str) -> None:
    """Raise when the spatial sides of ``x`` are not multiples of ``multiple`` (the model's total stride).

    The 2x2 average-pool shortcuts and the strided binary convs disagree on odd
    sizes (e.g. 7 -> 3 vs 4), which would otherwise fail deep inside a block.
    """
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        suggestion = max(multiple, round(width / multiple) * multiple)
        raise UserError(
            f"{model} needs input height and width divisible by {multiple} (its total stride), got "
            f"{height}x{width}: resize or pad the images (e.g. data.image_size={suggestion})"
        )
