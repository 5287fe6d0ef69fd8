"""The training criterion: cross-entropy (with optional mixup / CutMix and label smoothing)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class ClassificationLoss:
    """Cross-entropy on hard labels, or soft-target cross-entropy when mixup / CutMix is on."""

    def __init__(self, data_cfg: dict[str, Any], train_cfg: dict[str, Any], num_classes: int) -> None:
        self.smoothing = float(train_cfg["label_smoothing"])
        self.mixup = None
        if data_cfg["mixup"] > 0 or data_cfg["cutmix"] > 0:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=data_cfg["mixup"],
                cutmix_alpha=data_cfg["cutmix"],
                label_smoothing=self.smoothing,
                num_classes=num_classes,
            )

    def prepare(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix the batch when mixup / CutMix is on (targets become soft)."""
        if self.mixup is not None and len(labels) % 2 == 0:
            return self.mixup(images, labels)
        return images, labels

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor, epoch: int) -> torch.Tensor:
        if targets.ndim == 2:
            return torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
        return F.cross_entropy(logits, targets, label_smoothing=self.smoothing)

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        """Extra per-epoch fields for metrics.jsonl (none for plain cross-entropy)."""
        return {}
