"""Datasets and loaders: ImageNet / image folders, CIFAR-10/100, Fashion-MNIST, synthetic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnext.data import augment, memory
from bnext.data.batched_transforms import BatchTransform
from bnext.data.device_loader import DeviceFileLoader
from bnext.data.folders import EncodedImageFolder, SafeImageFolder, collate_encoded
from bnext.data.loader import FileLoader, InMemoryLoader
from bnext.data.stats import input_stats
from bnext.errors import UserError

DATASETS = ("imagenet", "cifar10", "cifar100", "fashion-mnist", "folder", "synthetic")
PIPELINES = ("auto", "cpu", "gpu")


@dataclass
class DataBundle:
    """Train and validation loaders plus what a model needs to know about the data."""

    train: InMemoryLoader | FileLoader | DeviceFileLoader
    val: InMemoryLoader | FileLoader | DeviceFileLoader
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    pipeline: str = "memory"  # memory (in-memory datasets) | cpu | gpu (folder datasets)


def _memory_splits(name: str, cfg: dict[str, Any], seed: int) -> tuple[memory.ArraySplit, memory.ArraySplit]:
    root, size = cfg["data_dir"], cfg["image_size"]
    if name == "fashion-mnist":
        return memory.fashion_mnist(root, True, size), memory.fashion_mnist(root, False, size)
    if name in ("cifar10", "cifar100"):
        classes = 10 if name == "cifar10" else 100
        return (memory.cifar(root, True, classes, cfg["download"]), memory.cifar(root, False, classes, cfg["download"]))
    count, classes = cfg["synthetic_size"], cfg["synthetic_classes"]
    return memory.synthetic(count, classes, size, seed), memory.synthetic(count // 4, classes, size, seed + 1)


def _folder_root(name: str, cfg: dict[str, Any]) -> Path:
    if not cfg["data_dir"]:
        raise UserError(f"dataset {name!r} needs data.data_dir (a folder with train/ and val/ class folders)")
    return Path(cfg["data_dir"])


def _folder_datasets(name: str, cfg: dict[str, Any]) -> tuple[SafeImageFolder, SafeImageFolder]:
    root, size = _folder_root(name, cfg), cfg["image_size"]
    mean, std = augment.IMAGENET_MEAN, augment.IMAGENET_STD
    if cfg["augment"] == "imagenet":
        train_tf = augment.imagenet_train_transform(size, cfg["randaugment"], mean, std)
        val_tf = augment.eval_transform(size, mean, std)
    else:
        train_tf = augment.cifar_file_transform(size, mean, std, train=cfg["augment"] == "cifar")
        val_tf = augment.cifar_file_transform(size, mean, std, train=False)
    train = SafeImageFolder(root / "train", train_tf)
    return train, SafeImageFolder(root / "val", val_tf, classes=train.classes)


def resolve_pipeline(choice: str, device: torch.device) -> str:
    """``data.pipeline`` with ``auto`` made concrete: gpu when training on CUDA, else cpu."""
    if choice not in PIPELINES:
        raise UserError(f"unknown data.pipeline {choice!r}: choose one of {', '.join(PIPELINES)}")
    if choice == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    return choice


def describe_pipeline(pipeline: str, device: torch.device, workers: int) -> str:
    """One line for the training log: where images are decoded and augmented."""
    if pipeline == "cpu":
        return f"data: cpu pipeline (PIL decode + torchvision / timm augmentation in {workers} worker processes)"
    decoder = "nvJPEG" if device.type == "cuda" else "torchvision's CPU decoder"
    return (
        f"data: gpu pipeline ({workers} workers read file bytes; {decoder} decodes and batched ops augment "
        f"on {device.type})"
    )


def _batch_transforms(cfg: dict[str, Any]) -> tuple[BatchTransform, BatchTransform]:
    """The gpu pipeline's (train, val) transforms, the batched twins of ``_folder_datasets``' transforms."""
    size, stats = cfg["image_size"], (augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    if cfg["augment"] == "imagenet":  # as imagenet_train_transform / eval_transform
        train = BatchTransform("imagenet", size, *stats, randaugment=cfg["randaugment"])
        return train, BatchTransform("eval", size, *stats)
    kind = "cifar" if cfg["augment"] == "cifar" else "eval"  # as cifar_file_transform (resize + centre crop)
    return BatchTransform(kind, size, *stats, crop_ratio=1.0), BatchTransform("eval", size, *stats, crop_ratio=1.0)


def _folder_loaders(
    name: str, cfg: dict[str, Any], pipeline: str, batch: int, device: torch.device, repeats: int, **shards: Any
):
    """(train, val, classes) loaders for an image-folder dataset through the chosen pipeline.

    ``shards``: the FileLoader arguments both splits share (seed, rank, world, num_workers).
    """
    if pipeline == "cpu":
        train_set, val_set = _folder_datasets(name, cfg)
    else:
        root = _folder_root(name, cfg)
        train_set = EncodedImageFolder(root / "train")
        val_set = EncodedImageFolder(root / "val", classes=train_set.classes)
        shards["collate"] = collate_encoded
    if cfg["subset"]:
        train_set.samples = train_set.samples[: cfg["subset"]]
        train_set.targets = train_set.targets[: cfg["subset"]]
    train = FileLoader(train_set, batch, True, repeats=repeats, **shards)
    val = FileLoader(val_set, batch, False, **shards)
    if pipeline == "gpu":
        train_tf, val_tf = _batch_transforms(cfg)
        train, val = DeviceFileLoader(train, train_tf, device), DeviceFileLoader(val, val_tf, device)
    return train, val, list(train_set.classes)


def build_data(config: dict[str, Any], rank: int = 0, world: int = 1, device: torch.device | None = None) -> DataBundle:
    """Loaders for ``config['data']`` with the global batch of ``config['train']`` split over ``world`` ranks.

    In-memory datasets deliver batches already on ``device`` (augmented there).
    """
    cfg, train_cfg = config["data"], config["train"]
    name = cfg["dataset"]
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    batch = train_cfg["batch_size"] // world
    if batch < 1:
        raise UserError(f"batch_size {train_cfg['batch_size']} is smaller than the {world} ranks")
    seed, repeats = train_cfg["seed"], cfg["repeated_aug"]
    if name in ("imagenet", "folder"):
        target = device or torch.device("cpu")
        pipeline = resolve_pipeline(cfg["pipeline"], target)
        shards = dict(seed=seed, rank=rank, world=world, num_workers=cfg["num_workers"])
        train, val, classes = _folder_loaders(name, cfg, pipeline, batch, target, repeats, **shards)
        return DataBundle(
            train, val, len(classes), classes, augment.IMAGENET_MEAN, augment.IMAGENET_STD, cfg["image_size"], pipeline
        )
    train_split, val_split = _memory_splits(name, cfg, seed)
    train_split = train_split.head(cfg["subset"])
    mean, std = input_stats(name)
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    do_augment = cfg["augment"] != "none"
    common = dict(mean=mean_t, std=std_t, seed=seed, rank=rank, world=world, device=device or torch.device("cpu"))
    return DataBundle(
        InMemoryLoader(train_split, batch, train=True, repeats=repeats, augment=do_augment, **common),
        InMemoryLoader(val_split, batch, train=False, **common),
        train_split.num_classes,
        train_split.classes,
        mean,
        std,
        train_split.images.shape[-1],
    )


__all__ = ["DATASETS", "PIPELINES", "DataBundle", "build_data", "describe_pipeline", "input_stats", "resolve_pipeline"]
