"""Epoch-deterministic batch iterators shared by in-memory and image-file datasets.

The sample order and the augmentation randomness of epoch ``e`` depend only on
``(seed, e)`` (and the batch index), so a run resumed at any batch sees exactly
the batches it would have seen, and DDP ranks read disjoint shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bnext.data.augment import normalize, pad_crop_flip
from bnext.data.folders import collate_skipping
from bnext.data.memory import ArraySplit

Batch = tuple[torch.Tensor, torch.Tensor, int]  # images, labels, skipped-as-unreadable


def epoch_indices(
    count: int, epoch: int, seed: int, *, shuffle: bool, rank: int = 0, world: int = 1, repeats: int = 1
) -> torch.Tensor:
    """This rank's sample indices for ``epoch``: a seeded permutation, optionally repeated, sharded.

    With ``repeats > 1`` (repeated augmentation) every index appears ``repeats``
    times in a row before sharding, so the copies land on different ranks, and
    the epoch keeps ``count`` samples in total.
    """
    if shuffle:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        order = torch.arange(count)
    if repeats > 1:
        order = order.repeat_interleave(repeats)[:count]
    if not shuffle:  # evaluation: every sample exactly once over all ranks
        return order[rank::world]
    per_rank = count // world  # training: equal shards so DDP ranks step together
    return order[rank : per_rank * world : world]


class EpochSampler(Sampler[int]):
    """Sampler over ``epoch_indices`` that can start mid-epoch (``set_epoch(epoch, start)``)."""

    def __init__(self, count: int, seed: int, *, shuffle: bool, rank: int, world: int, repeats: int = 1) -> None:
        self.count, self.seed, self.shuffle = count, seed, shuffle
        self.rank, self.world, self.repeats = rank, world, repeats
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> torch.Tensor:
        return epoch_indices(
            self.count,
            self.epoch,
            self.seed,
            shuffle=self.shuffle,
            rank=self.rank,
            world=self.world,
            repeats=self.repeats,
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :].tolist())

    def __len__(self) -> int:
        return len(self._indices()) - self.start


@dataclass
class InMemoryLoader:
    """Batches of an ``ArraySplit``, augmented per batch with tensor ops (``augment`` = pad-4 crop + flip).

    Each uint8 batch is copied to ``device`` once (from pinned memory, without
    blocking, on CUDA) and cropped, flipped and normalized there: a GPU never waits
    on CPU augmentation. The random draws come from a CPU generator seeded by
    (seed, epoch, batch), so CPU and GPU runs see the same crops and flips.
    """

    split: ArraySplit
    batch_size: int
    mean: torch.Tensor
    std: torch.Tensor
    train: bool
    seed: int = 0
    rank: int = 0
    world: int = 1
    repeats: int = 1
    augment: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __len__(self) -> int:
        count = len(self.epoch_order(0))
        return count // self.batch_size if self.train else -(-count // self.batch_size)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The split's sample indices in the order this rank reads them in ``epoch``."""
        return epoch_indices(
            len(self.split),
            epoch,
            self.seed,
            shuffle=self.train,
            rank=self.rank,
            world=self.world,
            repeats=self.repeats,
        )

    def batch_ids(self, order: torch.Tensor, batch: int) -> torch.Tensor:
        """The sample indices of batch ``batch`` of an ``epoch_order``."""
        return order[batch * self.batch_size : (batch + 1) * self.batch_size]

    @property
    def deterministic_images(self) -> bool:
        """True when a sample's image is the same in every epoch (no random augmentation)."""
        return not (self.train and self.augment)

    def in_order(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The whole split, normalized and unaugmented, in index order (e.g. to tabulate a teacher's outputs)."""
        mean, std = self.mean.to(self.device), self.std.to(self.device)
        for begin in range(0, len(self.split), batch_size):
            yield normalize(self.split.images[begin : begin + batch_size].to(self.device), mean, std)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = self.epoch_order(epoch)
        mean, std = self.mean.to(self.device), self.std.to(self.device)  # once per epoch, not per batch
        for batch in range(start_batch, len(self)):
            chosen = self.batch_ids(order, batch)
            images, labels = self.split.images[chosen], self.split.labels[chosen]
            if self.device.type == "cuda":
                images = images.pin_memory().to(self.device, non_blocking=True)
                labels = labels.pin_memory().to(self.device, non_blocking=True)
            if self.train and self.augment:
                generator = torch.Generator().manual_seed(((self.seed * 7919 + epoch) * 1_000_003 + batch) % 2**63)
                images = pad_crop_flip(images, 4, generator)
            yield normalize(images, mean, std), labels, 0


@dataclass
class FileLoader:
    """Batches of an image-file dataset through a DataLoader with an ``EpochSampler``."""

    dataset: Dataset
    batch_size: int
    train: bool
    seed: int = 0
    rank: int = 0
    world: int = 1
    repeats: int = 1
    num_workers: int = 2
    worker_init: Callable[[int], None] | None = None
    collate: Callable[[list], Any] = collate_skipping  # collate_encoded for the gpu pipeline's byte batches

    def __post_init__(self) -> None:
        self.sampler = EpochSampler(
            len(self.dataset), self.seed, shuffle=self.train, rank=self.rank, world=self.world, repeats=self.repeats
        )

    def __len__(self) -> int:
        self.sampler.set_epoch(0)
        count = len(self.sampler)
        return count // self.batch_size if self.train else -(-count // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            drop_last=self.train,
            generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch * 1009 + start_batch),
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        yield from loader
