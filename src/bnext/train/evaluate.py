"""Top-1 / top-5 evaluation, shared by the trainer and ``bnext eval``."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bnext.hardware import model_device
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
    """Accuracy (%) and mean cross-entropy of ``model`` over ``loader`` (all ranks combined).

    Batches are moved to the device the model is on (``info.device`` under DDP).
    """
    info = info or DistInfo(device=model_device(model))
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=info.device)  # hits@1, hits@5, loss
    count = skipped = 0.0
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
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
        totals += torch.stack(
            [
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                F.cross_entropy(logits, labels, reduction="sum").double(),
            ]
        )
        count += len(labels)
    model.train(was_training)
    correct1, correct5, loss_sum = totals.tolist()  # the only host sync
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


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader, epoch: int, batches: int, device: torch.device, channels_last: bool = False
) -> None:
    """Re-estimate BatchNorm running statistics as plain averages over ``batches`` training batches.

    A BNN's BatchNorm inputs shift whenever latent weights flip sign, so the
    running averages gathered during the epoch lag behind the final weights;
    fresh statistics of the final weights make eval (and the checkpoint) match
    them. Uses a batch order of its own, so training randomness is untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    was_training = model.training
    model.train()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    for index, (images, _, _) in enumerate(loader.epoch(1_000_000 + epoch)):
        if index >= batches:
            break
        images = images.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        model(images)
    for m, (momentum, training) in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
