"""The ``data.pipeline: gpu`` loader: workers read file bytes; decoding and augmentation run batched on a device.

CPU workers only read each file's bytes (``EncodedImageFolder``), sharded per
DDP rank by the same ``EpochSampler`` as the CPU pipeline. The main process
decodes a batch at once (nvJPEG on CUDA) and runs a ``BatchTransform`` there. The
transform's random draws come from a generator seeded by (seed, epoch, rank,
batch), so a resumed run sees the same batches. On a machine without CUDA the
same code runs on CPU tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from bnext.data.batched_transforms import BatchTransform
from bnext.data.decode import decode_batch
from bnext.data.folders import EncodedImageFolder, collate_encoded
from bnext.data.loader import Batch, EpochSampler


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """The augmentation seed of one batch: distinct per (seed, epoch, rank, batch)."""
    return (((seed * 7919 + epoch) * 1_000_003 + rank) * 1_000_033 + batch) % 2**63


@dataclass
class DeviceFileLoader:
    """Batches of an ``EncodedImageFolder``, decoded and transformed on ``device``."""

    dataset: EncodedImageFolder
    batch_size: int
    train: bool
    transform: BatchTransform
    seed: int = 0
    rank: int = 0
    world: int = 1
    repeats: int = 1
    num_workers: int = 2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.sampler = EpochSampler(
            len(self.dataset), self.seed, shuffle=self.train, rank=self.rank, world=self.world, repeats=self.repeats
        )

    def __len__(self) -> int:
        self.sampler.set_epoch(0)
        count = len(self.sampler)
        return count // self.batch_size if self.train else -(-count // self.batch_size)

    def encoded_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """This rank's batches of (file bytes, labels), read by the worker processes."""
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            collate_fn=collate_encoded,
            drop_last=self.train,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers else None,
        )
        for buffer, lengths, labels in loader:
            yield list(torch.split(buffer, lengths.tolist())), labels

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        for index, (encoded, labels) in enumerate(self.encoded_batches(epoch, start_batch), start=start_batch):
            decoded = decode_batch(encoded, self.device)
            kept = [i for i, image in enumerate(decoded) if image is not None]
            skipped = len(decoded) - len(kept)
            if not kept:
                yield torch.empty(0, device=self.device), torch.empty(0, dtype=torch.int64), skipped
                continue
            generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, self.rank, index))
            images = self.transform([decoded[i] for i in kept], generator)
            yield images, labels[kept].to(self.device, non_blocking=True), skipped
