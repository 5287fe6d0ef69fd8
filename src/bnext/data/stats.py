"""Per-dataset input normalization (mean, std in [0, 1] units): the one table of these facts."""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_STATS = {
    "fashion-mnist": ((0.2860,) * 3, (0.3530,) * 3),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "synthetic": ((0.5,) * 3, (0.25,) * 3),
}


def input_stats(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units that ``dataset`` is normalized with (ImageNet's for folders)."""
    return _STATS.get(dataset, (IMAGENET_MEAN, IMAGENET_STD))
