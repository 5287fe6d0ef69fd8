"""ImageNet input pipeline speed: the CPU pipeline (PIL + timm in N workers) against the gpu pipeline.

Makes an ImageNet-like folder of natural-looking JPEGs (300-500 px sides, ~40 KB each,
``bnext.data.natural_images``) once, then measures, interleaved in rounds:

- each pipeline alone, images/s with the ImageNet training recipe (random-resized crop,
  flip, RandAugment rand-m7-mstd0.5, normalize), the cpu pipeline at several worker counts;
- ``bnext train`` with ``imagenet/bnext_tiny`` (no teachers) on the folder through the
  gpu pipeline: the second epoch's images/s and data-time share.

On a machine without CUDA the "gpu" pipeline runs its batched ops on CPU tensors (the
fallback), and the file says so (``gpu_pipeline_device``).

    PYTHONPATH=src python3 benchmarks/input_pipeline.py [--images 6400] [--rounds 3]

Writes benchmarks/results/input_pipeline.json on CUDA, input_pipeline_cpu.json otherwise (or ``--output``),
rewritten after each part. ``--gpu-only`` skips the cpu pipeline (benchmarks/gpu_check.sh, stage 4).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import torch

from bnext.benchmarking import write_result
from bnext.config import add_set_argument, load_config
from bnext.data import build_data
from bnext.data.natural_images import write_jpeg_folder
from bnext.train import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def _write_class(args: tuple[Path, int, int, int]) -> None:
    root, label, train, val = args
    write_jpeg_folder(root, classes=1, per_class=train, val_per_class=val, seed=label, first_class=label)


def jpeg_folder(root: Path, images: int, classes: int, val_per_class: int) -> Path:
    """An ImageNet-like folder at ``root`` with ``images`` training JPEGs (made in parallel unless already there)."""
    if not (root / "done").exists():
        per_class = images // classes
        with Pool(os.cpu_count()) as pool:
            pool.map(_write_class, [(root, label, per_class, val_per_class) for label in range(classes)])
        (root / "done").touch()
    return root


def recipe(root: Path, pipeline: str, workers: int, batch: int, size: int, extra: list[str] = ()) -> dict[str, Any]:
    overrides = [
        f"data.data_dir={root}",
        f"data.image_size={size}",
        f"data.pipeline={pipeline}",
        f"data.num_workers={workers}",
        f"train.batch_size={batch}",
        "distill.mode=none",
        *extra,
    ]
    return load_config("imagenet/bnext_tiny", overrides)


def pipeline_speed(
    root: Path, pipeline: str, workers: int, batch: int, size: int, batches: int, device: torch.device
) -> float:
    """Images/s of the training loader alone over ``batches`` batches after a first (warm-up) batch."""
    loader = build_data(recipe(root, pipeline, workers, batch, size), device=device).train
    seen, started = 0, None
    for index, (images, _labels, _skipped) in enumerate(loader.epoch(0)):
        if index == 0:
            started = time.perf_counter()
            continue
        seen += len(images)
        if index == batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def train_speed(
    root: Path, workers: int, batch: int, size: int, subset: int, device: torch.device, overrides: list[str]
) -> dict[str, Any]:
    """``bnext train`` (ImageNet recipe + ``overrides``, gpu pipeline, no teachers): the second epoch's speed and
    data share."""
    out = tempfile.mkdtemp(prefix="bnext-pipeline-bench-")
    extra = [f"data.subset={subset}", "train.epochs=2", "train.eval_every=100", f"output={out}", *overrides]
    config = recipe(root, "gpu", workers, batch, size, extra)
    config["train"]["device"] = device.type
    trainer = Trainer(copy.deepcopy(config))
    record = trainer.fit()
    return {
        "images_per_s": record["images_per_s"],
        "data_time_share": record["data_time_share"],
        "compile_mode": trainer.compile_mode,
        "autocast": str(trainer.amp_dtype),
        "batch_size": batch,
        "images_per_epoch": subset,
        "overrides": overrides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--images", type=int, default=6400 if cuda else 1024, help="training JPEGs in the folder")
    parser.add_argument("--classes", type=int, default=16, help="class folders the JPEGs are spread over")
    parser.add_argument("--val-per-class", type=int, default=4, help="validation JPEGs per class")
    parser.add_argument("--folder", type=Path, help="the JPEG folder (made when missing); default: a cache in ~/.cache")
    parser.add_argument("--size", type=int, default=224, help="training image size (px)")
    parser.add_argument("--batch", type=int, default=256 if cuda else 64)
    parser.add_argument("--batches", type=int, default=20 if cuda else 8, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--gpu-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--gpu-only", action="store_true", help="measure the gpu pipeline only, not the cpu one")
    parser.add_argument("--train-images", type=int, default=5120 if cuda else 256, help="images per training epoch")
    parser.add_argument("--train-batch", type=int, default=256 if cuda else 32)
    parser.add_argument("--output", type=Path, default=RESULTS / f"input_pipeline{'' if cuda else '_cpu'}.json")
    add_set_argument(parser, "override a key of the bnext train run's recipe (repeatable)")
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    cores = os.cpu_count() or 1
    cache = Path.home() / ".cache" / "bnext" / f"jpeg-folder-{args.images}-{args.classes}-{args.val_per_class}"
    root = jpeg_folder(args.folder or cache, args.images, args.classes, args.val_per_class)
    files = sorted((root / "train").rglob("*.JPEG"))
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA: the gpu pipeline ran on CPU tensors)",
        "cpu_cores": cores,
        "gpu_pipeline_device": device.type,
        "gpu_pipeline_workers": args.gpu_workers,
        "folder": {
            "train_images": len(files),
            "classes": args.classes,
            "mean_kb": round(sum(f.stat().st_size for f in files) / len(files) / 1024, 1),
            "sides_px": [300, 500],
        },
        "recipe": "imagenet/bnext_tiny (random-resized crop, flip, rand-m7-mstd0.5), distill.mode=none",
        "image_size": args.size,
        "batch_size": args.batch,
        "timed_batches": args.batches,
    }
    cpu_workers = (
        [] if args.gpu_only else sorted({w for w in (1, 2, 4, 8, cores - 1) if 1 <= w <= max(cores - 1, 1)} | {cores})
    )
    timings: dict[str, list[float]] = {}
    for round_index in range(args.rounds):
        for workers in cpu_workers:
            speed = pipeline_speed(root, "cpu", workers, args.batch, args.size, args.batches, device)
            timings.setdefault(f"cpu_{workers}", []).append(speed)
        speed = pipeline_speed(root, "gpu", args.gpu_workers, args.batch, args.size, args.batches, device)
        timings.setdefault("gpu", []).append(speed)
        print(f"round {round_index + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in timings.items()), flush=True)
    median = {name: round(statistics.median(values), 1) for name, values in timings.items()}
    speeds = {"gpu_pipeline": median["gpu"]}
    if cpu_workers:
        best_cpu = max(cpu_workers, key=lambda w: median[f"cpu_{w}"])
        speeds.update(
            cpu_pipeline=median[f"cpu_{best_cpu}"],
            cpu_pipeline_by_workers={str(w): median[f"cpu_{w}"] for w in cpu_workers},
        )
        result["cpu_pipeline_workers"] = best_cpu
    result.update(images_per_s=speeds, rounds={name: [round(v, 1) for v in values] for name, values in timings.items()})
    write_result(args.output, result)
    train = train_speed(root, args.gpu_workers, args.train_batch, args.size, args.train_images, device, args.overrides)
    result.update(
        train_images_per_s=round(train["images_per_s"], 1),
        train_data_time_share=round(train["data_time_share"], 4),
        train=train,
    )
    print(f"wrote {write_result(args.output, result)}")


if __name__ == "__main__":
    main()
