"""The ImageNet train / eval transforms over a whole batch of decoded images, on their device.

Images arrive as a list of uint8 (3, H, W) tensors of different sizes. Each gets
its own crop box (torchvision's ``RandomResizedCrop`` rule, or resize + centre
crop for evaluation); one ``roi_align`` call per memory chunk resamples every box
to ``size`` x ``size``. ``roi_align`` averages ``ceil(box / size)`` bilinear
samples per output pixel, so large boxes are low-pass filtered (antialiased) as
torchvision's resize is. Flip, RandAugment and normalization follow as batched
ops. All random draws come from a CPU generator, so a batch depends only on its
seed and the images, on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from bnext.data.augment import normalize, pad_crop_flip
from bnext.data.randaugment import RandAugmentSpec, rand_augment

CHUNK_ELEMENTS = 1 << 26  # float elements per roi_align input (256 MB): bounds memory for very large images
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


def center_crop_boxes(sizes: torch.Tensor, size: int, crop_ratio: float = 0.875) -> torch.Tensor:
    """(N, 4) float source-pixel boxes equal to torchvision's ``Resize(size / crop_ratio)`` + ``CenterCrop(size)``."""
    short = round(size / crop_ratio)
    height, width = sizes[:, 0].double(), sizes[:, 1].double()
    portrait = height > width
    new_h = torch.where(portrait, torch.floor(short * height / width), torch.full_like(height, short))
    new_w = torch.where(portrait, torch.full_like(width, short), torch.floor(short * width / height))
    top = torch.round((new_h - size) / 2) * height / new_h
    left = torch.round((new_w - size) / 2) * width / new_w
    return torch.stack([top, left, size * height / new_h, size * width / new_w], 1)


def resized_crops(images: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Resample each image's (top, left, height, width) box to ``size`` x ``size``: float (N, 3, size, size).

    The images are stacked into one tall strip per chunk, each with a replicated
    border row above and below (so bilinear samples at a box edge never read the
    neighbouring image) and replicated columns up to the chunk's widest image.
    """
    device = images[0].device
    out = torch.empty(len(images), images[0].shape[0], size, size, device=device)
    begin = 0
    while begin < len(images):
        end, widest, rows = begin, 0, 0
        while end < len(images):
            h, w = images[end].shape[-2:]
            grown_w, grown_rows = max(widest, w + 1), rows + h + 2
            if end > begin and grown_w * grown_rows * 3 > CHUNK_ELEMENTS:
                break
            widest, rows, end = grown_w, grown_rows, end + 1
        strip, offsets, offset = [], [], 0
        for image in images[begin:end]:
            h, w = image.shape[-2:]
            strip.append(F.pad(image.float(), (0, widest - w, 1, 1), mode="replicate"))
            offsets.append(offset + 1)
            offset += h + 2
        top, left, height, width = boxes[begin:end].double().unbind(1)
        top = top + torch.tensor(offsets, dtype=torch.float64)
        rois = torch.stack([torch.zeros_like(top), left, top, left + width, top + height], 1)
        out[begin:end] = roi_align(
            torch.cat(strip, 1)[None], rois.float().to(device), (size, size), sampling_ratio=-1, aligned=True
        )
        begin = end
    return out


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
        if self.randaugment:
            RandAugmentSpec.parse(self.randaugment)  # fail at build time on an unsupported string

    def __call__(self, images: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Normalized float (N, 3, size, size) on the images' device."""
        sizes = image_sizes(images)
        if self.kind != "imagenet":
            out = torch.round(
                resized_crops(images, center_crop_boxes(sizes, self.size, self.crop_ratio), self.size)
            ).clamp(0, 255)
            if self.kind == "cifar":
                out = pad_crop_flip(out, 4, generator)
        else:
            boxes = random_resized_crop_boxes(sizes, generator)
            flips = torch.rand(len(images), generator=generator) < 0.5
            out = flip(torch.round(resized_crops(images, boxes, self.size)).clamp(0, 255), flips)
            if self.randaugment:
                fill = torch.tensor([round(255 * m) for m in self.mean], dtype=torch.float32)
                out = rand_augment(out, RandAugmentSpec.parse(self.randaugment), generator, fill)
        device = out.device
        return normalize(out, torch.tensor(self.mean, device=device), torch.tensor(self.std, device=device))
