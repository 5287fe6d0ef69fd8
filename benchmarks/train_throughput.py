"""Training throughput of bnext_tiny (32 px, batch 128, 2 threads): eager, channels_last, torch.compile.

Also measures the in-memory input pipeline (index + pad-crop-flip + normalize of
one batch) as a share of a training step. Writes results/train_throughput.json.

    python benchmarks/train_throughput.py [--steps 5] [--width 1.0]
"""

from __future__ import annotations

import argparse
import time

import torch

import bnext
from bnext.config import DEFAULTS
from bnext.data.loader import InMemoryLoader
from bnext.data.memory import synthetic
from bnext.train.schedule import build_optimizer

try:
    from benchmarks.common import write_result
except ImportError:  # run as a script from the repo root
    from common import write_result


def step_time(model, optimizer, images, labels, steps: int, warmup: int) -> float:
    """Median seconds per training step after ``warmup`` steps."""
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0, help="bnext_tiny width_multiplier")
    parser.add_argument("--stem-stride", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    kwargs = dict(num_classes=10, stem_stride=args.stem_stride, width_multiplier=args.width)
    config = {"train": dict(DEFAULTS["train"])}
    labels = torch.randint(0, 10, (args.batch,))
    images = torch.randn(args.batch, 3, 32, 32)
    results = {}
    for mode in ("eager", "channels_last", "compiled"):
        torch.manual_seed(0)
        model = bnext.create_model("bnext_tiny", **kwargs)
        x = images
        if mode != "eager":
            model = model.to(memory_format=torch.channels_last)
            x = images.contiguous(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, config["train"])
        compile_seconds = None
        if mode == "compiled":
            start = time.perf_counter()
            model = torch.compile(model)
            step_time(model, optimizer, x, labels, steps=1, warmup=0)
            compile_seconds = time.perf_counter() - start
        seconds = step_time(model, optimizer, x, labels, args.steps, warmup=1)
        results[mode] = {"images_per_s": args.batch / seconds, "step_ms": 1000 * seconds}
        if compile_seconds is not None:
            results[mode]["compile_and_first_step_s"] = compile_seconds
        print(mode, f"{args.batch / seconds:.1f} img/s", flush=True)

    split = synthetic(4096, 10, 32, seed=0)
    loader = InMemoryLoader(split, args.batch, torch.tensor([0.5] * 3), torch.tensor([0.25] * 3), train=True)
    start = time.perf_counter()
    batches = sum(1 for _ in loader.epoch(0))
    data_ms = 1000 * (time.perf_counter() - start) / batches
    step_ms = results["channels_last"]["step_ms"]
    results["input_pipeline"] = {"batch_ms": data_ms, "share_of_step": data_ms / (data_ms + step_ms)}
    print(f"input pipeline {data_ms:.2f} ms/batch = {100 * data_ms / (data_ms + step_ms):.2f}% of a step")
    ratio = results["channels_last"]["images_per_s"] / results["eager"]["images_per_s"]
    results["speedup_channels_last_vs_eager"] = ratio
    results["speedup_compiled_vs_eager"] = results["compiled"]["images_per_s"] / results["eager"]["images_per_s"]
    results["setup"] = {"model": "bnext_tiny", **kwargs, "batch": args.batch, "threads": args.threads, "input_px": 32}
    print("wrote", write_result("train_throughput", results))


if __name__ == "__main__":
    main()
