"""Batched image decoding: JPEGs through torchvision (nvJPEG on CUDA), everything else on the CPU.

A batch of JPEGs is decoded in one ``decode_jpeg`` call on the target device. If
that call fails (a corrupt, truncated or unsupported file in the batch), each
image is retried alone, then on the CPU with torchvision and finally with PIL
(CMYK, grayscale, PNG, BMP...). A file nothing can read becomes None: the loader
skips and counts it.
"""

from __future__ import annotations

import io

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

JPEG_MAGIC = (0xFF, 0xD8, 0xFF)
_DECODE_ERRORS = (RuntimeError, ValueError, OSError, UnidentifiedImageError, SyntaxError)


def is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 3 and tuple(data[:3].tolist()) == JPEG_MAGIC


def decode_on_cpu(data: torch.Tensor) -> torch.Tensor | None:
    """uint8 (3, H, W) RGB from any format torchvision or PIL reads; None when neither can."""
    if not len(data):
        return None
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except _DECODE_ERRORS:
        pass
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
            return array.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()
    except _DECODE_ERRORS:
        return None


def _decode_jpeg_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except _DECODE_ERRORS:
        image = decode_on_cpu(data)
        return None if image is None else image.to(device, non_blocking=True)


def decode_batch(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode file bytes to RGB uint8 (3, H, W) tensors on ``device``; None for unreadable files."""
    out: list[torch.Tensor | None] = [None] * len(encoded)
    jpeg = [is_jpeg(data) for data in encoded]
    jpegs = [i for i, flag in enumerate(jpeg) if flag]
    others = [i for i, flag in enumerate(jpeg) if not flag]
    if jpegs:
        try:
            decoded = decode_jpeg([encoded[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpegs, decoded, strict=True):
                out[i] = image
        except _DECODE_ERRORS:
            for i in jpegs:
                out[i] = _decode_jpeg_one(encoded[i], device)
    for i in others:
        image = decode_on_cpu(encoded[i])
        out[i] = None if image is None else image.to(device, non_blocking=True)
    return out
