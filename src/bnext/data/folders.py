"""Image-folder datasets (ImageNet, any ``train/CLASS/*.jpg`` tree) with validation and corrupt-image skipping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from bnext.data.image_checks import warn_skipped
from bnext.data.labels import shared_class_index
from bnext.errors import UserError


def check_image_folder(root: Path) -> None:
    """Fail clearly on a missing root, no class folders, or an empty class folder."""
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist: point data.data_dir at the dataset root")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{root} has no class folders: expected {root}/CLASS_NAME/image.jpg")
    for folder in classes:
        if not any(f.suffix.lower() in IMG_EXTENSIONS for f in folder.rglob("*") if f.is_file()):
            raise UserError(
                f"class folder {folder} holds no images ({', '.join(IMG_EXTENSIONS)}): remove it or add images"
            )


class SafeImageFolder(ImageFolder):
    """ImageFolder that yields None for an unreadable image instead of raising; see ``collate_skipping``.

    ``classes``: the training split's class list, whose indices this split's labels then use
    (``shared_class_index``); None for the training split itself (its sorted class folders).
    """

    def __init__(self, root: str | Path, transform: Any = None, classes: Sequence[str] | None = None) -> None:
        check_image_folder(Path(root))
        self._train_classes = None if classes is None else list(classes)
        super().__init__(str(root), transform=transform, allow_empty=classes is not None)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        found, index = super().find_classes(directory)
        if self._train_classes is None:
            return found, index
        return self._train_classes, shared_class_index(self._train_classes, found, Path(directory))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, target = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except Image.DecompressionBombError as error:  # more pixels than PIL's limit: skipped like the gpu pipeline
            warn_skipped(f"{path}: {error}")
            return None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the readable samples; also return how many were skipped as unreadable."""
    good = [item for item in batch if item is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), skipped
    images = torch.stack([item[0] for item in good])
    labels = torch.tensor([item[1] for item in good], dtype=torch.int64)
    return images, labels, skipped


class EncodedImageFolder(SafeImageFolder):
    """An image-folder dataset whose samples are the files' raw bytes (for decoding in batches on a device).

    A worker only reads bytes; an unreadable file gives an empty tensor, which the
    decoder counts as skipped.
    """

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        return encoded, target


def collate_encoded(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One byte buffer for the whole batch (one shared-memory block per batch), each file's length, the labels."""
    lengths = torch.tensor([len(item[0]) for item in batch], dtype=torch.int64)
    labels = torch.tensor([item[1] for item in batch], dtype=torch.int64)
    return torch.cat([item[0] for item in batch]), lengths, labels
