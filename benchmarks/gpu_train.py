"""Training speed on one CUDA GPU: a bare fp32 step, each optimisation on its own, and ``bnext train``.

Random data held in memory; for bnext_tiny and bnext18 at 224 px and the demo's student at
32 px. Records images/s, ms per step, peak memory and compile seconds, then times ``bnext
train`` end to end with the defaults (with and without two Table-9-kind KD teachers, timm
EfficientNet-B2 and -B0 with random weights, run every step as with augmented images) and the whole demo.

    PYTHONPATH=src python3 benchmarks/gpu_train.py [--steps 30] [--skip-demo]

Writes benchmarks/results/gpu_train.json. Needs a CUDA GPU (it says so and stops without one).

``--bnext-train-only`` (stage 2 of benchmarks/gpu_check.sh) times only ``bnext train`` on bnext_tiny at
224 px: the GPU defaults and the authors' fp32 recipe (``train.amp=false``), each without and with the
two teachers, rewriting ``--output`` after each row; ``--dry-run`` runs those rows at toy sizes on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bnext.benchmarking import write_result
from bnext.config import load_config
from bnext.models import create_model
from bnext.train import Trainer
from bnext.train.schedule import build_optimizer

RESULT = Path(__file__).resolve().parent / "results" / "gpu_train.json"
MODELS = {
    "tiny_224": ("bnext_tiny", {"stem_stride": 2}, 224, 256),
    "bnext18_224": ("bnext18", {"stem_stride": 2}, 224, 256),
    "demo_student": ("bnext_tiny", {"stem_stride": 2, "width_multiplier": 0.25}, 32, 128),
}
VARIANTS = {  # each optimisation on its own, then all together
    "bare_fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"bf16": True},
    "fused_adamw": {"fused": True},
    "compile": {"compile": "default"},
    "compile_reduce_overhead": {"compile": "reduce-overhead"},
    "all": {"channels_last": True, "bf16": True, "fused": True, "compile": "auto"},
}
TRAIN_ROWS = {  # --bnext-train-only: name -> (overrides, with the two KD teachers), in order of value
    "defaults": ([], False),
    "defaults_kd": ([], True),
    "fp32": (["train.amp=false"], False),
    "fp32_kd": (["train.amp=false"], True),
}


def time_step(name: str, kwargs: dict, size: int, batch: int, options: dict, steps: int) -> dict[str, Any]:
    """ms per training step of a bare loop (no data loading), after warm-up; compile time separately."""
    device = torch.device("cuda")
    model = create_model(name, num_classes=1000, **kwargs).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    if options.get("channels_last"):
        model, images = (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        )
    cfg = {"weight_decay_conv": 1e-8, "weight_decay_other": 1e-3, "lr": 1e-3, "betas": [0.99, 0.999]}
    optimizer = build_optimizer(model, cfg, device if options.get("fused") else None)
    mode = options.get("compile")
    if mode == "auto":
        mode = "reduce-overhead" if size <= 64 else "default"
    runner = torch.compile(model, mode=mode) if mode else model
    dtype = torch.bfloat16 if options.get("bf16") else None

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(runner(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "images_per_s": batch / seconds,
        "ms_per_step": 1e3 * seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "compile_seconds": first - seconds if mode else 0.0,
    }


def bnext_train(
    name: str,
    kwargs: dict,
    size: int,
    batch: int,
    teachers: list[str] | None,
    extra: Sequence[str] = (),
    steps: int = 24,
) -> dict[str, Any]:
    """``bnext train`` with the ImageNet recipe's defaults (and ``extra`` overrides) on in-memory random images,
    ``steps`` per epoch: the second epoch's speed. Teachers run every step (not tabulated once)."""
    out = tempfile.mkdtemp(prefix="bnext-gpu-bench-")
    overrides = [
        f"model.name={name}",
        f"model.kwargs={kwargs}",
        "data.dataset=synthetic",
        f"data.image_size={size}",
        f"data.synthetic_size={batch * steps}",
        "data.synthetic_classes=1000",
        "data.augment=none",
        f"train.batch_size={batch}",
        "train.epochs=2",
        "train.eval_every=100",
        f"output={out}",
    ]
    if teachers:
        overrides += [
            "distill.mode=gap_sensitive",
            f"distill.strong={teachers[0]}",
            f"distill.assistants={teachers[1:]}",
            "distill.tabulate_teachers=false",
        ]
    else:
        overrides.append("distill.mode=none")
    config = load_config("imagenet/bnext_tiny", [*overrides, *extra])
    trainer = Trainer(copy.deepcopy(config))
    start = time.perf_counter()
    record = trainer.fit()
    return {"images_per_s": record["images_per_s"], "data_time_share": record["data_time_share"],
            "seconds": time.perf_counter() - start, "compile_mode": trainer.compile_mode,
            "autocast": str(trainer.amp_dtype)}  # fmt: skip


def random_teachers(folder: Path) -> list[str]:
    """timm EfficientNet-B2 and -B0 with random weights saved locally (no download): ``ARCH@path`` specs."""
    import timm

    specs = []
    for arch in ("efficientnet_b2", "efficientnet_b0"):
        path = folder / f"{arch}.pth"
        torch.save(timm.create_model(arch, pretrained=False).state_dict(), path)
        specs.append(f"timm:{arch}@{path}")
    return specs


def train_rows(output: str, dry_run: bool) -> int:
    """``--bnext-train-only``: the TRAIN_ROWS on bnext_tiny at 224 px, ``output`` rewritten after each row.

    A row that fails is recorded with its error and the next one runs; returns 1 if any failed.
    """
    name, kwargs, size, batch = MODELS["tiny_224"]
    steps = 16
    if dry_run:  # plumbing only
        kwargs, size, batch, steps = {**kwargs, "width_multiplier": 0.125}, 32, 2, 2
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "model": {"name": name, "kwargs": kwargs},
        "image_size": size,
        "batch_size": batch,
        "steps_per_epoch": steps,
        "data": "synthetic, in memory, no augmentation; the second epoch is timed",
        "teachers": "timm efficientnet_b2 (strong) + efficientnet_b0 (assistant), random weights, run every step",
        "rows": {},
    }
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        teachers = None
        for row, (overrides, with_teachers) in TRAIN_ROWS.items():
            try:
                if with_teachers and teachers is None:
                    teachers = random_teachers(Path(folder))
                numbers = bnext_train(name, kwargs, size, batch, teachers if with_teachers else None, overrides, steps)
                print(
                    f"{row:<12} {numbers['images_per_s']:>9,.0f} img/s  data {numbers['data_time_share']:.1%}  "
                    f"{numbers['seconds']:.0f} s  {numbers['autocast']}, compile {numbers['compile_mode']}",
                    flush=True,
                )
            except Exception as error:  # the next rows still run
                traceback.print_exc()
                numbers, failed = {"error": f"{type(error).__name__}: {error}"}, True
            result["rows"][row] = {"overrides": overrides, "kd_teachers": 2 if with_teachers else 0, **numbers}
            write_result(output, result)
    return int(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument("--bnext-train-only", action="store_true", help="only the bnext train rows (gpu_check.sh)")
    parser.add_argument("--dry-run", action="store_true", help="with --bnext-train-only: toy sizes, CPU allowed")
    args = parser.parse_args()
    if args.dry_run and not args.bnext_train_only:
        parser.error("--dry-run goes with --bnext-train-only")
    if not (torch.cuda.is_available() or args.dry_run):
        print("benchmarks/gpu_train.py needs a CUDA GPU; none is visible here.", file=sys.stderr)
        return 2
    if args.bnext_train_only:
        return train_rows(args.output, args.dry_run)
    steps: dict[str, dict] = {}
    for key, (name, kwargs, size, batch) in MODELS.items():
        for variant, options in VARIANTS.items():
            steps[f"{key}/{variant}"] = row = time_step(name, kwargs, size, batch, options, args.steps)
            print(f"{key:<14} {variant:<24} {row['images_per_s']:>9,.0f} img/s {row['ms_per_step']:>8.1f} ms "
                  f"{row['peak_memory_gib']:>6.1f} GiB compile {row['compile_seconds']:.0f} s", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        teachers = random_teachers(Path(folder))
        train = {
            "tiny_224": bnext_train("bnext_tiny", {"stem_stride": 2}, 224, 256, None),
            "tiny_224_kd": bnext_train("bnext_tiny", {"stem_stride": 2}, 224, 256, teachers),
            "demo_student": bnext_train("bnext_tiny", {"stem_stride": 2, "width_multiplier": 0.25}, 32, 128, None),
        }
    demo_seconds = None
    if not args.skip_demo:
        start = time.perf_counter()
        out = tempfile.mkdtemp(prefix="bnext-gpu-demo-")
        subprocess.run([sys.executable, "-m", "bnext.demo", "--output", out], check=True)
        demo_seconds = time.perf_counter() - start
    write_result(
        args.output,
        {
            "device": torch.cuda.get_device_name(0),
            "images_per_s": {
                "bare_fp32_tiny_224": steps["tiny_224/bare_fp32"]["images_per_s"],
                "bnext_train_tiny_224": train["tiny_224"]["images_per_s"],
                "bnext_train_tiny_224_kd": train["tiny_224_kd"]["images_per_s"],
                "demo_student": train["demo_student"]["images_per_s"],
            },
            "demo_seconds": demo_seconds,
            "steps": steps,
            "bnext_train": train,
        },
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
