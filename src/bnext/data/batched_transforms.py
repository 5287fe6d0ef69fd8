"""The ImageNet train / eval transforms over a whole batch of decoded images, on their device.

Images arrive as a list of uint8 (3, H, W) tensors of different sizes. Each gets
its own crop box (torchvision's ``RandomResizedCrop`` rule, or resize + centre
crop for evaluation) and is resized with the same antialiased bilinear kernel
torchvision uses (uint8 on CPU, float on GPU), one call per image. Flip,
RandAugment and normalization then run as batched ops. All random draws come
from a CPU generator, so a batch depends only on its seed and the images, on
any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from bnext.data.augment import normalize, pad_crop_flip
from bnext.data.randaugment import RandAugmentSpec, rand_augment

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
RRC_TRIES = 10


def random_resized_crop_boxes(sizes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, 4) boxes (top, left, height, width) by torchvision's ``RandomResizedCrop.get_params`` rule.

    ``sizes`` is (N, 2) (height, width). Ten tries of a random area fraction and
    log-uniform aspect ratio; the first that fits wins, else a centre crop clipped
    to the ratio range. The draws are made for all tries up front, so the result
    depends only on the generator and the sizes.
    """
    count = len(sizes)
    height, width = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = height * width
    draws = torch.rand(count, RRC_TRIES, 4, generator=generator, dtype=torch.float64)
    target = area * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * draws[..., 0])
    log_low, log_high = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = torch.floor(draws[..., 2] * (height - h + 1))
    left = torch.floor(draws[..., 3] * (width - w + 1))
    first = torch.where(fits, torch.arange(RRC_TRIES, 0, -1, dtype=torch.float64), 0.0).argmax(1, keepdim=True)
    chosen = torch.cat([t.gather(1, first) for t in (top, left, h, w)], 1)
    # fallback: the whole image, clipped to the aspect-ratio range, centred
    ratio = width / height
    fb_w = torch.where(
        ratio < RRC_RATIO[0], width, torch.where(ratio > RRC_RATIO[1], torch.round(height * RRC_RATIO[1]), width)
    )
    fb_h = torch.where(ratio < RRC_RATIO[0], torch.round(width / RRC_RATIO[0]), height)
    fallback = torch.cat([torch.floor((height - fb_h) / 2), torch.floor((width - fb_w) / 2), fb_h, fb_w], 1)
    return torch.where(fits.any(1, keepdim=True), chosen, fallback).long()


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchvision's antialiased bilinear resize of one (3, H, W) uint8 image.

    CPU resizes the uint8 image directly (torchvision's fast path, rounded, uint8 out); other
    devices resize in float (not yet rounded): ``as_levels`` finishes a stacked batch in one pass.
    """
    if image.device.type == "cpu":
        return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
    out = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0]


def as_levels(batch: torch.Tensor) -> torch.Tensor:
    """Stacked ``resize`` outputs as float holding uint8 values (one conversion or rounding per batch)."""
    return batch.float() if batch.dtype == torch.uint8 else batch.round_().clamp_(0, 255)


def resized_crops(images: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's (top, left, height, width) box resized to ``size`` x ``size``: float (N, 3, size, size)."""
    out = []
    for image, (top, left, height, width) in zip(images, boxes.tolist(), strict=True):
        out.append(resize(image[:, top : top + height, left : left + width], size, size))
    return as_levels(torch.stack(out))


def resize_center_crop(images: list[torch.Tensor], size: int, crop_ratio: float = 0.875) -> torch.Tensor:
    """torchvision's ``Resize(round(size / crop_ratio))`` + ``CenterCrop(size)`` per image, stacked."""
    short = round(size / crop_ratio)
    out = []
    for image in images:
        height, width = image.shape[-2:]
        if height > width:
            new_h, new_w = int(short * height / width), short
        else:
            new_h, new_w = short, int(short * width / height)
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
        out.append(resize(image, new_h, new_w)[:, top : top + size, left : left + size])
    return as_levels(torch.stack(out))


def flip(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flips`` entry is True."""
    return torch.where(flips.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def image_sizes(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([list(image.shape[-2:]) for image in images], dtype=torch.int64)


@dataclass(frozen=True)
class BatchTransform:
    """One of the folder-dataset transforms, for a list of decoded images on one device.

    ``kind``: ``imagenet`` (random-resized crop, flip, RandAugment), ``cifar``
    (resize + centre crop, then pad-4 crop + flip) or ``eval`` (resize the short
    side to ``size / crop_ratio`` + centre crop), as the CPU pipeline's transforms.
    """

    kind: str
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    randaugment: str = ""
    crop_ratio: float = 0.875

    def __post_init__(self) -> None:
        if self.kind not in ("imagenet", "cifar", "eval"):
            raise ValueError(f"unknown batch transform {self.kind!r}")
        _ = self.randaugment_spec  # fail at build time on an unsupported string

    @cached_property
    def randaugment_spec(self) -> RandAugmentSpec | None:
        """The parsed ``randaugment`` string (once, not per batch); None when RandAugment is off."""
        return RandAugmentSpec.parse(self.randaugment) if self.randaugment else None

    def __call__(self, images: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Normalized float (N, 3, size, size) on the images' device."""
        if self.kind != "imagenet":
            out = resize_center_crop(images, self.size, self.crop_ratio)
            if self.kind == "cifar":
                out = pad_crop_flip(out, 4, generator)
        else:
            boxes = random_resized_crop_boxes(image_sizes(images), generator)
            flips = torch.rand(len(images), generator=generator) < 0.5
            out = flip(resized_crops(images, boxes, self.size), flips)
            if self.randaugment_spec is not None:
                fill = torch.tensor([round(255 * m) for m in self.mean], dtype=torch.float32)
                out = rand_augment(out, self.randaugment_spec, generator, fill)
        device = out.device
        return normalize(out, torch.tensor(self.mean, device=device), torch.tensor(self.std, device=device))
