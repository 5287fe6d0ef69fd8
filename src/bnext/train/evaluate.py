"""Top-1 / top-5 evaluation, shared by the trainer and ``bnext eval``."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bnext.train.distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    info: DistInfo | None = None,
    *,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy (%) and mean cross-entropy of ``model`` over ``loader`` (all ranks combined)."""
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    correct1 = correct5 = loss_sum = count = skipped = 0.0
    batches = tqdm(loader.epoch(0), total=len(loader), desc="eval", leave=False, disable=not progress)
    for images, labels, n_skipped in batches:
        skipped += n_skipped
        if len(labels) == 0:
            continue
        images = images.to(info.device, non_blocking=True)
        labels = labels.to(info.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        context = (
            torch.autocast(info.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        )
        with context:
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top5 == labels[:, None]
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        count += len(labels)
    model.train(was_training)
    correct1, correct5, loss_sum, count, skipped = all_reduce_sum([correct1, correct5, loss_sum, count, skipped], info)
    if count == 0:
        raise RuntimeError("the evaluation set yielded no readable images")
    return {
        "top1": 100.0 * correct1 / count,
        "top5": 100.0 * correct5 / count,
        "loss": loss_sum / count,
        "count": int(count),
        "skipped": int(skipped),
    }
