"""Augmentation: batched tensor ops for in-memory data, torchvision/timm transforms for image files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import transforms

from bnext.data.stats import IMAGENET_MEAN, IMAGENET_STD


def pad_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """CIFAR-style augmentation of a whole batch: zero-pad, random crop back to size, random h-flip.

    Works on any dtype and device with two gathers, so it costs little next to a
    training step (no per-image Python work).
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    flip = torch.rand(n, generator=generator).to(images.device) < 0.5
    rows = (dy[:, None] + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]
    cols = cols.view(n, 1, 1, w)
    c = images.shape[1]
    out = padded.gather(2, rows.expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols.expand(n, c, h, w))


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float normalized by per-channel mean / std given in [0, 1] units."""
    return (images.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def imagenet_train_transform(size: int, randaugment: str, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Random-resized crop + flip + RandAugment (timm string, e.g. ``rand-m7-mstd0.5``) + normalize."""
    steps: list = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    if randaugment:
        from timm.data.auto_augment import rand_augment_transform

        hparams = {"translate_const": int(size * 0.45), "img_mean": tuple(round(255 * m) for m in mean)}
        steps.append(rand_augment_transform(randaugment, hparams))
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_ratio: float = 0.875):
    """Resize the short side to ``size / crop_ratio``, centre crop ``size``, normalize."""
    return transforms.Compose(
        [
            transforms.Resize(round(size / crop_ratio)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def cifar_file_transform(size: int, mean, std, train: bool):
    """Pad-4 crop + flip (train) for datasets read from image files at CIFAR size."""
    steps: list = [transforms.Resize(size), transforms.CenterCrop(size)]
    if train:
        steps += [transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)
