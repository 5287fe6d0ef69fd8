"""Packed 1-bit runtime vs PyTorch fp32 eval (issue: packed inference), as ratios within one run.

bnext_tiny at 224 px (1000 classes, random weights: speed does not depend on their values), in the C++
runtime (``bnext_runtime``) at the thread count being timed: (a) every binary conv layer, the runtime's
op (its own time) vs torch fp32 conv2d of the same shape, batch 1, at 1 and 2 threads; (b) end to end,
the runtime vs PyTorch fp32 eval with pre-binarized weights, batch 1 and 8, 1 and 2 threads, with the
share of the runtime's time spent inside the binary convs and the ms of each op kind (batch 1, 1 thread,
the runtime's own per-op times); (c) sizes: fp32 weights, packed .bnx with fp32 rest, packed .bnx of the
PTQ 8/8-4/4-4/4-8/8 model. Writes results/deploy_bench_<path>.json and .png, <path> being the kernel path
that ran (avx512, avx2, ...).

    python benchmarks/deploy_bench.py [--reps 15] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bnext import create_model
from bnext.checkpoint import save_checkpoint
from bnext.deploy import export_checkpoint
from bnext.deploy.bench import op_breakdown, packed_from_model, run_benchmark, threads
from bnext.deploy.runtime import supported_paths
from bnext.nn import set_temperature
from bnext.quant import calibrate, quantize_model

try:
    from benchmarks.common import add_quick_flag, native_kernel_path, write_result
except ImportError:
    from common import add_quick_flag, native_kernel_path, write_result

MIB = 2**20
PTQ = "8/8-4/4-4/4-8/8"


def sizes(name: str) -> dict[str, float]:
    """MiB of the fp32 weights and of the packed files (fp32 rest / PTQ rest) of a fresh ``name``."""
    model = create_model(name)
    set_temperature(model, 0.0)
    result = {"fp32_weights_mib": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / MIB}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        save_checkpoint(model, folder / "fp.pt", model_name=name, model_kwargs={})
        result["fp32_checkpoint_mib"] = (folder / "fp.pt").stat().st_size / MIB
        result["packed_mib"] = export_checkpoint(folder / "fp.pt", folder / "fp.bnx").bytes / MIB
        quantized = quantize_model(model, PTQ)
        calibrate(quantized, [torch.randn(1, 3, 224, 224)])  # export needs input ranges (their values: no matter)
        save_checkpoint(quantized, folder / "q.pt", model_name=name, model_kwargs={}, quant_config=PTQ)
        result[f"packed_ptq_{PTQ}_mib"] = export_checkpoint(folder / "q.pt", folder / "q.bnx").bytes / MIB
    return result


def ms_by_op_kind(model: torch.nn.Module, name: str, input_size: int, reps: int) -> dict[str, float]:
    """Median ms of each op kind (binary_conv, unit_tail, conv2d, ...) in one run of the packed ``model`` at batch
    1 and 1 thread, from the runtime's own per-op times: where the time outside the binary convs goes."""
    packed = packed_from_model(model, name, {})
    packed.set_threads(1)
    with threads(1):
        return op_breakdown(packed.native, torch.randn(1, 3, input_size, input_size).numpy(), reps)


def chart(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]["threads_1"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    colours = ["tab:blue" if row["kernel"] == 3 else "tab:orange" for row in layers]
    left.bar(range(len(layers)), [row["speedup"] for row in layers], color=colours)
    left.set_xticks(range(len(layers)), [f"{r['in_channels']}@{r['input_hw'][0]}" for r in layers], rotation=90)
    left.set_yscale("log")
    left.set_ylabel("speedup vs torch fp32 conv2d")
    left.set_title("per binary conv, batch 1, 1 thread (blue 3x3, orange 1x1; label: channels@input px)")
    left.axhline(1, color="black", linewidth=0.5)
    rows = result["end_to_end"]
    right.bar(range(len(rows)), [row["speedup"] for row in rows], color="tab:green")
    right.set_xticks(range(len(rows)), [f"b{r['batch']} t{r['threads']}" for r in rows])
    right.set_title("end to end (batch, threads)")
    right.set_ylabel("speedup vs PyTorch fp32 eval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    add_quick_flag(parser)
    args = parser.parse_args()
    native_kernel_path()
    input_size, reps = (64, 2) if args.quick else (224, args.reps)
    model = create_model("bnext_tiny")
    result = run_benchmark(
        model, "bnext_tiny", {}, input_size=input_size, batches=[1, 8], thread_counts=[1, 2], reps=reps
    )
    result["kernel_paths"] = supported_paths()
    result["sizes"] = sizes("bnext_tiny")
    result["packed_ms_by_op_kind"] = ms_by_op_kind(model, "bnext_tiny", input_size, max(5, reps))
    name = f"deploy_bench_{result['kernel_path']}"  # one file per kernel path (CPU ISA) measured
    path = write_result(name, result, args.quick)
    print("wrote", path, "and", chart(result, path.with_suffix(".png")))


if __name__ == "__main__":
    main()
