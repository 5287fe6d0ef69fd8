"""Labels: the one class-name -> index mapping every split of a dataset shares, and the label range check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bnext.errors import UserError


def shared_class_index(train_classes: Sequence[str], split_classes: Sequence[str], split: Path) -> dict[str, int]:
    """The train split's class -> index mapping, for a split (e.g. val) whose class folders are ``split_classes``.

    A split that lacks some training classes keeps the indices of the others (frog stays frog, not dog);
    a class the training split lacks is an error, since the model has no output for it.
    """
    extra = sorted(set(split_classes) - set(train_classes))
    if extra:
        shown = ", ".join(extra[:5]) + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
        raise UserError(
            f"{split} has class folders the training split lacks: {shown}. The model has no output for them: "
            "remove them from this split or add them to train/"
        )
    return {name: index for index, name in enumerate(train_classes)}


def check_labels(labels: torch.Tensor, num_classes: int, source: str) -> None:
    """Raise unless every label of ``source`` is a class index in 0..num_classes-1."""
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if len(outside):
        raise UserError(
            f"{source} holds {len(outside)} labels outside 0..{num_classes - 1} (e.g. {int(outside[0])}) for its "
            f"{num_classes} classes: the file is damaged or belongs to another dataset; download it again"
        )
