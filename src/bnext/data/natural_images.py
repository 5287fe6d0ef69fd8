"""Natural-looking test images and ImageNet-like JPEG folders, for benchmarks and tests without real data.

The images have the 1/f amplitude spectrum of natural photographs (colour-correlated
noise) plus a few sharp-edged ellipses, so JPEG sizes, decode cost and augmentation
behave like photos, unlike uniform noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def natural_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (height, width, 3) image with a 1/f spectrum and a few hard-edged shapes."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width)) ** 1.1
    mixing = rng.normal(size=(3, 3)) * 0.4 + np.eye(3)  # correlated colour channels
    channels = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
        channels.append(np.fft.irfft2(amplitude * np.exp(1j * phase), s=(height, width)))
    image = np.tensordot(np.stack(channels, -1), mixing, axes=([2], [0]))
    image = (image - image.mean()) / (image.std() + 1e-9) * 45 + rng.uniform(90, 160, 3)
    rows, cols = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
        inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1
        image[inside] = image[inside] * 0.3 + rng.uniform(0, 255, 3) * 0.7
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg_folder(
    root: str | Path,
    classes: int,
    per_class: int,
    val_per_class: int = 0,
    sizes: tuple[int, int] = (300, 500),
    quality: int = 75,
    seed: int = 0,
    first_class: int = 0,
) -> Path:
    """An ImageNet-like ``train/`` (and ``val/``) tree of JPEGs whose sides are drawn from ``sizes``.

    Classes are named ``n<8-digit index>`` from ``first_class`` on (to write a large folder in parallel parts).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label in range(first_class, first_class + classes if count else first_class):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                pixels = natural_image(height, width, int(rng.integers(2**31)))
                Image.fromarray(pixels).save(folder / f"img_{index:05d}.JPEG", quality=quality)
    return root
