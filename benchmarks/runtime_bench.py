"""The C++ runtime (``bnext_runtime``) against the targets of issue 27: equality, speed, small.

* ``equality``: logits of the runtime vs PyTorch eval for every exportable family, without PTQ and after the
  PTQ configs of Table 7 (and all parts at 4 bits), batch 1 and 3, at 224x224 and 192x160: max |diff| / max
  |logit| (target <= 1e-4) and argmax agreement. A deep BNN with random weights is chaotic (a change in
  float summation order flips some signs and the logits diverge), so each model is at exact sign with its
  BatchNorm statistics those of the images it is run on; beside each case stands the deviation of the torch
  reference of the same graph (``bnext.deploy.reference``) from PyTorch eval: where both deviate, the case
  shows the model's sensitivity (a sign flip), not a runtime error; and, independent of the export, that of
  PyTorch eval in float64 (how far the model's own logits move with float rounding).
* ``speed``: bnext_tiny at 224 px, batch 1 and 8, 1 and 2 threads, the runtime vs the packed runtime it
  replaced (the torch extension with fused units of commit PREVIOUS_COMMIT, materialized from git as package
  ``bnext_prev``, its kernels built on first use), both through ``bnext.deploy``'s module call, interleaved
  in one process in turns of BLOCK calls, medians.
* ``small``: the bnext-runtime wheel's size (target <= 2 MB); the peak RSS (target < 150 MB) and the cold
  start (import + load + first image, target < 0.5 s; files in the OS cache) of a fresh process running
  bnext_tiny at 224 px on one thread with the runtime, with PyTorch eval (``bnext.loading``) and with ONNX
  Runtime on the same model's ONNX (``peers.export_onnx`` of the pre-binarized fp32 model; no torch imported).

Writes ``results/runtime_<kernel path>.json`` with the CPU model and flags and the kernel path.

    pip install ./runtime && python benchmarks/runtime_bench.py [--parts equality speed small] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from bnext import create_model
from bnext.benchmarking import command_line
from bnext.checkpoint import save_checkpoint
from bnext.deploy import export_checkpoint, peers
from bnext.deploy.bench import (
    SETTLE_SECONDS,
    median,
    median_seconds,
    packed_from_model,
    prebinarized_float_model,
    threads,
)
from bnext.deploy.reference import run_graph
from bnext.deploy.runtime import supported_paths
from bnext.hardware import cpu_model, isa_summary
from bnext.nn import set_temperature
from bnext.quant import calibrate, quantize_model
from bnext.workflows import TABLE7_CONFIGS

try:
    from benchmarks.common import BLOCK, QUICK_RESULTS, RESULTS, add_quick_flag, native_kernel_path, write_result
except ImportError:
    from common import BLOCK, QUICK_RESULTS, RESULTS, add_quick_flag, native_kernel_path, write_result

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("bnext_tiny", "bnext18", "reactnet_a", "birealnet18", "real2binary18", "binarynet18")
NO_PTQ = "32/32"
PTQ_CONFIGS = (*TABLE7_CONFIGS, "4/4-4/4-4/4-4/4")  # Table 7 (32/32: no PTQ), then every part at 4 bits
SIZES = ((224, 224), (192, 160))  # (height, width)
TOLERANCE = 1e-4  # of the largest logit magnitude
PREVIOUS_COMMIT = "3079709"  # the last commit with the torch-extension runtime
TARGETS = {"wheel_mb_max": 2.0, "peak_rss_mb_max": 150.0, "cold_start_seconds_max": 0.5}
PARTS = ("equality", "speed", "small")


# ----------------------------------------------------------------------------- equality
def calibrated_model(name: str, images: torch.Tensor) -> nn.Module:
    """A random-weight ``name`` at exact sign, in eval mode, whose BatchNorm statistics are those of ``images``
    (plain averages of one train-mode forward): each BN then normalizes what it sees, as in a trained model.
    Its scale and bias are random too (as trained ones are): with the initial bias 0, a channel whose binary
    conv output is constant comes out of its BN as exactly 0, where PyTorch's sign gives 0 and a bit cannot
    (the runtime's sign(0) is +1), which no trained model shows. Seeded: the same weights in every run."""
    torch.manual_seed(0)
    model = create_model(name)
    set_temperature(model, 0.0)
    for norm in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        norm.reset_running_stats()
        norm.momentum = None
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    with torch.no_grad():
        model.train()(images)
    return model.eval()


def deviation(logits: torch.Tensor, expected: torch.Tensor) -> dict[str, float]:
    """max |logits - expected| / max |expected|, and the share of images whose argmax agrees."""
    return {
        "max_diff_over_max_logit": float((logits - expected).abs().max() / expected.abs().max()),
        "argmax_agreement": float((logits.argmax(1) == expected.argmax(1)).float().mean()),
    }


def meets(found: dict[str, float]) -> bool:
    return found["max_diff_over_max_logit"] <= TOLERANCE and found["argmax_agreement"] == 1.0


def equality_case(model: nn.Module, name: str, images: torch.Tensor) -> list[dict[str, Any]]:
    """At batch 1 and 3: the runtime and the torch reference of the exported graph against PyTorch eval; and,
    as evidence independent of the export, PyTorch eval of the same model in float64 against float32 (how far
    the model's own logits move with float rounding)."""
    packed = packed_from_model(model, name, {})
    model64 = copy.deepcopy(model).double()
    rows = []
    for batch in (1, 3):
        x = images[:batch]
        with torch.inference_mode():
            expected = model(x)
            reference = run_graph(packed.header["graph"], packed.arrays, x)
            float64 = model64(x.double()).float()
        runtime = packed(x)
        row: dict[str, Any] = {
            "batch": batch,
            "runtime_vs_torch": deviation(runtime, expected),
            "reference_vs_torch": deviation(reference, expected),
            "runtime_vs_reference": deviation(runtime, reference),
            "float64_vs_torch": deviation(float64, expected),
        }
        row["meets_1e-4"] = meets(row["runtime_vs_torch"])
        if not row["meets_1e-4"]:
            sensitive = not meets(row["reference_vs_torch"])
            row["cause"] = "model sensitivity: the torch reference deviates too" if sensitive else "runtime"
        rows.append(row)
    return rows


def equality(sizes: tuple[tuple[int, int], ...], configs: tuple[str, ...]) -> dict[str, Any]:
    """Every family x PTQ config x size x batch (BatchNorm and PTQ ranges calibrated on the images run)."""
    cases = []
    generator = torch.Generator().manual_seed(0)
    for height, width in sizes:
        images = torch.randn(3, 3, height, width, generator=generator)
        for name in FAMILIES:
            model = calibrated_model(name, images)
            for config in configs:
                quantized = model
                if config != NO_PTQ:
                    quantized = quantize_model(copy.deepcopy(model), config)
                    calibrate(quantized, [images])
                for row in equality_case(quantized, name, images):
                    cases.append({"model": name, "ptq": config, "height": height, "width": width, **row})
                    diffs = ", ".join(
                        f"{key.split('_vs_')[0]} {row[key]['max_diff_over_max_logit']:.1e}"
                        for key in ("runtime_vs_torch", "reference_vs_torch", "float64_vs_torch")
                    )
                    print(
                        f"{name:<14} {config:<16} {height}x{width} batch {row['batch']}: {diffs}; argmax "
                        f"{row['runtime_vs_torch']['argmax_agreement']:.2f} "
                        f"{'ok' if row['meets_1e-4'] else row['cause']}",
                        flush=True,
                    )
    failing = [case for case in cases if not case["meets_1e-4"]]
    return {
        "tolerance": TOLERANCE,
        "models": "random weights at exact sign, BatchNorm statistics of the images run, PTQ ranges calibrated on them",
        "deviation": "max |logits - PyTorch eval float32| / max |PyTorch eval float32|, per case and batch",
        "cases": cases,
        "summary": {
            "cases": len(cases),
            "meet_1e-4": len(cases) - len(failing),
            "model_sensitivity": sum(case["cause"] != "runtime" for case in failing),
            "runtime_deviates": sum(case["cause"] == "runtime" for case in failing),
            "failing_where_float64_deviates_too": sum(not meets(case["float64_vs_torch"]) for case in failing),
        },
    }


# ----------------------------------------------------------------------------- speed
DOTTED_NAME = re.compile(r"(?<![.\w])bnext(?=\.[A-Za-z_])")  # bnext.x, not models.bnext (a module of models)
FROM_IMPORT = re.compile(r"\bfrom bnext import\b")


def previous_package(folder: Path) -> ModuleType:
    """bnext as of PREVIOUS_COMMIT, importable as ``bnext_prev`` beside today's bnext: ``src/bnext`` from git
    into ``folder``, renamed, its imports rewritten; its kernels build on first use into ``folder/kernels``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS_COMMIT, "src/bnext"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "src" / "bnext_prev"
    (folder / "src" / "bnext").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(FROM_IMPORT.sub("from bnext_prev import", DOTTED_NAME.sub("bnext_prev", path.read_text())))
    os.environ["BNEXT_KERNEL_CACHE"] = str(folder / "kernels")
    sys.path.insert(0, str(folder / "src"))
    return importlib.import_module("bnext_prev")


def previous_runtime(model: nn.Module, name: str, folder: Path) -> tuple[nn.Module | None, str]:
    """(the previous packed runtime of ``model``'s weights, its kernel path), or (None, why it cannot run)."""
    try:
        previous = previous_package(folder)
        twin = previous.create_model(name)
        twin.load_state_dict(model.state_dict())
        kernels = importlib.import_module("bnext_prev.deploy.kernels")
        if kernels.extension() is None:  # it would fall back to torch ops: no number worth comparing
            return None, "the previous runtime's C++ extension did not build (see the warning above)"
        bench = importlib.import_module("bnext_prev.deploy.bench")
        return bench.packed_from_model(twin, name, {}), kernels.resolved_path(None)
    except (subprocess.CalledProcessError, OSError, ImportError, RuntimeError) as error:
        return None, f"the previous runtime could not be materialized: {type(error).__name__}: {error}"


def speed(
    model: nn.Module, folder: Path, size: int, batches: tuple[int, ...], counts: tuple[int, ...], reps: int
) -> dict[str, Any]:
    """Median ms of the runtime and of the previous packed runtime on the same weights, interleaved."""
    previous, previous_path = previous_runtime(model, "bnext_tiny", folder)
    result: dict[str, Any] = {"model": f"bnext_tiny, {size} px, random weights", "previous_commit": PREVIOUS_COMMIT}
    if previous is None:
        print(f"speed: no comparison: {previous_path}", flush=True)
        return {**result, "error": previous_path}
    current = packed_from_model(model, "bnext_tiny", {})
    result |= {"kernel_path": current.kernel_path, "previous_kernel_path": previous_path, "rows": []}
    generator = torch.Generator().manual_seed(0)
    for count in counts:
        current.set_threads(count)  # the previous runtime's kernels use torch's thread count
        for batch in batches:
            images = torch.randn(batch, 3, size, size, generator=generator)
            calls = {"bnext_runtime": partial(current, images), "previous": partial(previous, images)}
            with threads(count), torch.inference_mode():
                seconds = median_seconds(calls, reps, block=BLOCK, settle=SETTLE_SECONDS)
            row = {
                "batch": batch,
                "threads": count,
                "bnext_runtime_ms": 1e3 * seconds["bnext_runtime"],
                "previous_ms": 1e3 * seconds["previous"],
                "speedup": seconds["previous"] / seconds["bnext_runtime"],
            }
            row["at_least_as_fast"] = row["speedup"] >= 1.0
            result["rows"].append(row)
            print(
                f"batch {batch}, {count} thread(s): bnext_runtime {row['bnext_runtime_ms']:.2f} ms, previous "
                f"{row['previous_ms']:.2f} ms ({row['speedup']:.2f}x)",
                flush=True,
            )
    return result


# ----------------------------------------------------------------------------- small
# The peak RSS is the process's VmHWM: its ru_maxrss would report the parent's peak instead (Linux keeps the larger
# of the pre-exec and post-exec peaks, and a forked child starts with the parent's pages counted).
PROBE = """import json, sys, time
start = time.perf_counter()
{body}
seconds = time.perf_counter() - start
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": seconds, "peak_rss_kib": peak_kib}}))
"""
IMAGE = "np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)"
PROBES = {  # one image of bnext_tiny at 224 px on one thread: what each process imports, loads and runs
    "bnext_runtime": f"""import numpy as np, bnext_runtime
bnext_runtime.load(sys.argv[1])({IMAGE})""",
    "torch_eval": f"""import numpy as np, torch
from bnext.loading import model_from_checkpoint
torch.set_num_threads(1)
model, _ = model_from_checkpoint(sys.argv[1])
with torch.inference_mode():
    model.eval()(torch.from_numpy({IMAGE}))""",
    "onnxruntime": f"""import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
session.run(None, {{session.get_inputs()[0].name: {IMAGE}}})""",
}


def wheel_size(folder: Path) -> dict[str, Any]:
    """Bytes of the bnext-runtime wheel ``pip wheel ./runtime`` builds."""
    command = [sys.executable, "-m", "pip", "wheel", str(REPO / "runtime"), "--no-deps", "-w", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = list(folder.glob("bnext_runtime-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        return {"error": f"pip wheel exited {done.returncode}: {done.stderr[-1500:]}"}
    size = wheels[0].stat().st_size
    return {
        "file": wheels[0].name,
        "bytes": size,
        "mb": size / 1e6,
        "meets_2_mb": size / 1e6 <= TARGETS["wheel_mb_max"],
    }


def fresh_process(probe: str, path: Path, runs: int) -> dict[str, Any]:
    """Median over ``runs`` fresh processes: the probe's own import + load + first image seconds, the whole
    process's wall seconds (interpreter start and exit too), and its peak RSS."""
    rows = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(body=probe), str(path)], capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
        rows.append({**json.loads(done.stdout.splitlines()[-1]), "process_seconds": wall})
    result = {key: median([row[key] for row in rows]) for key in ("seconds", "process_seconds", "peak_rss_kib")}
    result["peak_rss_mb"] = result.pop("peak_rss_kib") * 1024 / 1e6
    result["runs"] = runs
    result["meets_targets"] = (
        result["peak_rss_mb"] < TARGETS["peak_rss_mb_max"] and result["seconds"] < TARGETS["cold_start_seconds_max"]
    )
    return result


def small(model: nn.Module, folder: Path, runs: int) -> dict[str, Any]:
    """The wheel's size, and each way of running ``model`` (bnext_tiny, 224 px) in a fresh process."""
    files = {
        "torch_eval": folder / "model.pt",
        "bnext_runtime": folder / "model.bnx",
        "onnxruntime": folder / "model.onnx",
    }
    save_checkpoint(model, files["torch_eval"], model_name="bnext_tiny", model_kwargs={})
    export_checkpoint(files["torch_eval"], files["bnext_runtime"])
    processes: dict[str, Any] = {}
    for name, probe in PROBES.items():
        if name == "onnxruntime":
            if importlib.util.find_spec("onnxruntime") is None:
                processes[name] = {"error": "onnxruntime is not installed: pip install -e '.[bench]'"}
                continue
            peers.export_onnx(prebinarized_float_model(model), files[name], 224)
        processes[name] = {"file_mb": files[name].stat().st_size / 1e6, **fresh_process(probe, files[name], runs)}
        print(f"{name}: {processes[name]}", flush=True)
    return {
        "targets": TARGETS,
        "wheel": wheel_size(folder / "wheel"),
        "processes": processes,
        "threads": 1,
        "model": "bnext_tiny, 224 px, 1000 classes, one image",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--reps", type=int, default=40, help="timed calls per runtime in the speed part")
    parser.add_argument("--cold-starts", type=int, default=5, help="fresh processes per way of running (medians)")
    add_quick_flag(parser)
    args = parser.parse_args()
    kernel_path = native_kernel_path()
    result: dict[str, Any] = {
        "cpu": cpu_model(),
        "isa": isa_summary(),
        "kernel_path": kernel_path,
        "kernel_paths": supported_paths(),
    }
    if "equality" in args.parts:
        quick = (((64, 64), (64, 32)), (NO_PTQ, "8/8-4/8-4/8-8/8"))
        result["equality"] = equality(*(quick if args.quick else (SIZES, PTQ_CONFIGS)))
        print("equality:", result["equality"]["summary"], flush=True)
    model = create_model("bnext_tiny")
    set_temperature(model, 0.0)
    with tempfile.TemporaryDirectory() as folder:
        if "small" in args.parts:
            (Path(folder) / "wheel").mkdir()
            result["small"] = small(model, Path(folder), 1 if args.quick else args.cold_starts)
            print("wheel:", result["small"]["wheel"], flush=True)
        if "speed" in args.parts:  # last: it puts the previous bnext on sys.path
            batches, counts, reps = ((1,), (1,), 2) if args.quick else ((1, 8), (1, 2), args.reps)
            (Path(folder) / "previous").mkdir()
            result["speed"] = speed(model, Path(folder) / "previous", 224, batches, counts, reps)
    stamp = {
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for part in set(args.parts) & set(PARTS):
        result[part]["measured"] = stamp
    result.update(kept_parts(f"runtime_{kernel_path}", set(PARTS) - set(args.parts), args.quick))
    print("wrote", write_result(f"runtime_{kernel_path}", result, args.quick))


def kept_parts(name: str, parts: set[str], quick: bool) -> dict[str, Any]:
    """The parts not measured by this run, from the file an earlier run wrote (each stamped with its own
    command and date), so that parts can be measured in separate runs into one file."""
    path = (QUICK_RESULTS if quick else RESULTS) / f"{name}.json"
    if not parts or not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    return {part: earlier[part] for part in parts if part in earlier}


if __name__ == "__main__":
    main()
