"""``bnext-run MODEL.bnx IMAGE...``: the top-5 classes of each image (files via Pillow, or .npy arrays)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bnext_runtime import ModelError, load


def _image_array(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """(channels, height, width) float32 in [0, 1]: a .npy array as it is, an image file resized."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False).astype(np.float32)
        if array.shape != (channels, height, width):
            raise ModelError(f"{path}: the array has shape {array.shape}, the model takes {(channels, height, width)}")
        return array
    try:
        from PIL import Image
    except ImportError:
        raise ModelError(
            "decoding image files needs Pillow: `pip install pillow` (or `pip install bnext-runtime[images]`), "
            "or pass .npy arrays of shape (C, H, W) in [0, 1]"
        ) from None
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ModelError(f"{path}: not a readable image ({error})") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bnext-run", description=__doc__)
    parser.add_argument("model", help="a .bnx file (bnext export)")
    parser.add_argument("images", nargs="+", type=Path, help="image files (Pillow) or .npy (C, H, W) arrays in [0, 1]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        model = load(args.model, threads=args.threads)
        channels, height, width = model.input_shape
        mean = np.asarray(model.card.get("mean", [0.0] * channels), dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(model.card.get("std", [1.0] * channels), dtype=np.float32).reshape(-1, 1, 1)
        batch = np.stack([(_image_array(p, channels, height, width) - mean) / std for p in args.images])
        logits = model(batch)
    except ModelError as error:
        print(f"bnext-run: {error}", file=sys.stderr)
        return 2
    names = model.card.get("classes") or [str(k) for k in range(model.num_classes)]
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for path, row in zip(args.images, probabilities, strict=True):
        top = np.argsort(-row)[: args.top]
        print(f"{path}: " + ", ".join(f"{names[k]} {row[k]:.3f}" for k in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
