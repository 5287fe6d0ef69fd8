"""Fine-tuning after PTQ (paper 7.5): AdamW (0.99, 0.999), lr 1e-7, no weight decay, binary layers frozen."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnext.hardware import model_device
from bnext.nn.binary_conv import BinaryConv2d


def finetune_quantized(
    model: nn.Module, loader, epochs: int, lr: float = 1e-7, device: torch.device | None = None
) -> list[float]:
    """Train every parameter except the binary convs' weights through the fake quantizers.

    Rounding has a straight-through gradient, so the quantized layers learn to
    live with their grids; calibrated input ranges stay frozen. Returns the mean
    training loss per epoch.
    """
    device = device or model_device(model)
    binary = {id(m.weight) for m in model.modules() if isinstance(m, BinaryConv2d)}
    trainable = [p for p in model.parameters() if id(p) not in binary and p.requires_grad]
    frozen = [p for p in model.parameters() if id(p) in binary]
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=(0.99, 0.999), weight_decay=0.0)
    losses = []
    model.train()
    try:
        for epoch in range(epochs):
            total = count = 0.0
            for images, labels, _ in loader.epoch(epoch):
                if len(labels) == 0:
                    continue
                loss = F.cross_entropy(model(images.to(device)), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(labels)
                count += len(labels)
            losses.append(total / max(count, 1))
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        model.eval()
    return losses
