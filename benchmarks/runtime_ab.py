"""A/B of two builds of the C++ runtime on the same ``.bnx``: this working tree's ``runtime/`` against a base
commit's, both built here (CMake, Release) and loaded side by side in one process, taking turns of a few
calls (the first untimed; medians), at 1 and 2 threads and batch 1 and 8, with the per-op-kind split of each
and the largest logit difference between them. The model: bnext_tiny at 224 px with random weights and
BatchNorm statistics calibrated on random images (as benchmarks/runtime_bench.py makes it).

    python benchmarks/runtime_ab.py --base 9ab5475

Writes benchmarks/results/runtime_ab_<kernel path>.json: run it on an AVX-512 or AArch64 machine to measure a
kernel change there (the base must have the same C API: commits from 9ab5475 on).
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any

import bnext_runtime
import numpy as np
import torch

from bnext.card import ModelCard
from bnext.deploy.bench import SETTLE_SECONDS, median_seconds, op_breakdown
from bnext.deploy.export import packed_model
from bnext.deploy.fileformat import write_bnx
from bnext.hardware import cpu_model, isa_summary

try:
    from benchmarks.common import BLOCK, add_quick_flag, native_kernel_path, write_result
    from benchmarks.runtime_bench import calibrated_model
except ImportError:
    from common import BLOCK, add_quick_flag, native_kernel_path, write_result
    from runtime_bench import calibrated_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224


def build(source: Path, folder: Path) -> Path:
    """libbnext_runtime.so built from the CMake project ``source`` in ``folder`` (Release, no tests)."""
    configure = ["cmake", "-S", str(source), "-B", str(folder), "-DCMAKE_BUILD_TYPE=Release", "-DBNEXT_BUILD_TESTS=OFF"]
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(folder), "-j2"], check=True, capture_output=True)
    return folder / "libbnext_runtime.so"


def base_source(revision: str, folder: Path) -> Path:
    """The ``runtime/`` folder of commit ``revision``, extracted into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "runtime"], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "runtime"


def load_build(library: Path, model: Path) -> bnext_runtime.Model:
    """``model`` loaded by the library at ``library`` (both builds live in one process)."""
    return bnext_runtime.load(model, lib=bnext_runtime.open_library(library))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (git revision)")
    parser.add_argument("--reps", type=int, default=40, help="timed calls per build and setting")
    add_quick_flag(parser)
    args = parser.parse_args()
    kernel_path = native_kernel_path()
    reps = 3 if args.quick else args.reps
    generator = torch.Generator().manual_seed(0)
    calibration = torch.randn(16 if args.quick else 64, 3, SIZE, SIZE, generator=generator)
    model = calibrated_model("bnext_tiny", calibration)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "runtime"], capture_output=True, text=True)
    result: dict[str, Any] = {
        "cpu": cpu_model(),
        "isa": isa_summary(),
        "kernel_path": kernel_path,
        "model": f"bnext_tiny, {SIZE} px, random weights (calibrated BatchNorm)",
        "base": args.base,
        "new": head.stdout.strip() + (" + uncommitted runtime/ changes" if dirty.stdout.strip() else ""),
        "method": f"both builds in one process, in turns of {BLOCK} calls (the first untimed) after a "
        f"{SETTLE_SECONDS * 1e3:.0f} ms pause, medians of about {reps} calls",
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        header, arrays, _ = packed_model(model, ModelCard.from_create_kwargs("bnext_tiny", {}, 1000))
        bnx = write_bnx(folder / "model.bnx", header, arrays)
        print("building the base and the new runtime ...", flush=True)
        libraries = {
            "base": build(base_source(args.base, folder / "base"), folder / "base-build"),
            "new": build(ROOT / "runtime", folder / "new-build"),
        }
        builds = {name: load_build(library, bnx) for name, library in libraries.items()}
        for batch in (1,) if args.quick else (1, 8):
            images = torch.randn(batch, 3, SIZE, SIZE, generator=generator).numpy()
            gap = float(np.abs(builds["new"](images) - builds["base"](images)).max())
            for threads in (1, 2):
                for runtime in builds.values():
                    runtime.threads = threads
                calls = {name: partial(runtime, images) for name, runtime in builds.items()}
                seconds = median_seconds(calls, reps, block=BLOCK, settle=SETTLE_SECONDS)
                ms = {name: 1e3 * value for name, value in seconds.items()}
                row = {"batch": batch, "threads": threads, "base_ms": ms["base"], "new_ms": ms["new"]}
                row |= {"speedup": ms["base"] / ms["new"], "max_abs_logit_diff": gap}
                result["rows"].append(row)
                print(
                    f"batch {batch}, {threads} thread(s): base {ms['base']:.2f} ms, new {ms['new']:.2f} ms "
                    f"({row['speedup']:.3f}x), logits differ by at most {gap:.1e}",
                    flush=True,
                )
        images = torch.randn(1, 3, SIZE, SIZE, generator=generator).numpy()
        for runtime in builds.values():
            runtime.threads = 1
        result["op_kinds_ms_batch1_1thread"] = {name: op_breakdown(b, images, reps) for name, b in builds.items()}
        result["kernel_paths"] = {name: b.kernel_path for name, b in builds.items()}
    print("wrote", write_result(f"runtime_ab_{kernel_path}", result, args.quick))


if __name__ == "__main__":
    main()
