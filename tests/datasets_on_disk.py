"""Writers of small datasets in the real on-disk layouts (IDX, torchvision CIFAR, ImageFolder)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def write_fashion_mnist(
    root: Path, count: int = 40, torchvision_layout: bool = False, gz: bool = True, test_count: int | None = None
) -> Path:
    """Random 28x28 images with labels 0-9 in turn: ``count`` training and ``test_count`` (default ``count``) test."""
    folder = root / "FashionMNIST" / "raw" if torchvision_layout else root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", count), ("t10k", count if test_count is None else test_count)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return root


def write_cifar(root: Path, num_classes: int = 10, count: int = 20) -> Path:
    rng = np.random.default_rng(1)
    label_key = "labels" if num_classes == 10 else "fine_labels"

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: [i % num_classes for i in range(n)]}

    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (folder / name).write_bytes(pickle.dumps(batch(count)))
        meta = {"label_names": [f"c{i}" for i in range(10)]}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name in ("train", "test"):
            (folder / name).write_bytes(pickle.dumps(batch(count)))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    return root


def write_image_folder(root: Path, classes: int = 3, per_class: int = 4, size: int = 40) -> Path:
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.jpg")
    return root
