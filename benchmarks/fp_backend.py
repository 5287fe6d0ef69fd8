"""The runtime's own fp conv / dense code vs Eigen (the standard: measure a well-kept library against own code,
on speed and binary size, before hand-writing fp convs and GEMMs).

Builds benchmarks/fp_backend/ with g++ -O3 in the runtime's flag style (-ffp-contract=off, hidden visibility):
the runtime's own ``conv_pixels`` / ``dense_row`` (compiled from runtime/src/ops/conv2d.cpp and dense.cpp as
they are, target_clones avx2 / default) and the same functions written with Eigen (core module: im2col + one
GEMM for the convs, a GEMV / GEMM for the dense layer), Eigen compiled three times: AVX2+FMA (what a build
dispatching on the CPU would run here), AVX2 without FMA (the runtime's no-FMA rounding policy) and baseline
x86-64. One process times them on one thread, interleaved rep by rep, on the bnext_tiny stem (224x224x3 ->
32, 3x3 stride 2), a 1x1 fp shortcut conv (56x56x64 -> 128) and the classifier (1024 -> 1000, batch 1 and 8),
and checks Eigen's outputs against the own ones. Also: stripped .so sizes (own functions vs the Eigen ones,
both with their ISA variants) and the compile times. Writes results/fp_backend_<isa>.json (avx512 / avx2).
Needs libeigen3-dev (``apt-get install -y libeigen3-dev``).

    python benchmarks/fp_backend.py [--seconds 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bnext.hardware import cpu_flags

try:
    from benchmarks.common import add_quick_flag, write_result
except ImportError:
    from common import add_quick_flag, write_result

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "benchmarks" / "fp_backend"
BUILD = ROOT / "build" / "fp_backend"
EIGEN_INCLUDE = Path("/usr/include/eigen3")
RUNTIME_FILES = ("runtime/src/ops/conv2d.cpp", "runtime/src/ops/dense.cpp", "runtime/src/ops/vectorize.h")
CXX_FLAGS = [
    "-O3", "-DNDEBUG", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
    "-ffp-contract=off", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", f"-I{SOURCES}",
]  # fmt: skip
EIGEN_FLAGS = [f"-isystem{EIGEN_INCLUDE}", "-DEIGEN_DONT_PARALLELIZE"]
# Best first: the first one a CPU runs is the one a CPU-dispatching runtime would (the headline numbers).
EIGEN_VARIANTS = {"eigen_avx2fma": ["-mavx2", "-mfma"], "eigen_avx2": ["-mavx2"], "eigen_base": []}
TOLERANCE = 1e-5  # max |y_eigen - y_own| / max |y_own|
CLEAR_WIN = 1.1  # a speed ratio beyond this (either way) picks a side; within it, a tie
QUICK_SECONDS = 0.2


def isa_name() -> str:
    """The ISA the result file is named after: avx512 (avx512f), avx2, or base."""
    flags = cpu_flags()
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "base"


def run_timed(command: list[str]) -> dict[str, float]:
    """Run a build command under ``nice -n 10``; its wall seconds and CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["nice", "-n", "10", *command], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def compile_objects() -> dict[str, dict[str, float]]:
    """Compile own.cpp, each Eigen variant of eigen.cpp, the dispatcher and the bench driver into BUILD; the
    compile times of each object."""
    own = [f"-I{ROOT / 'runtime' / 'src'}", f"-I{ROOT / 'runtime' / 'include'}"]
    jobs: dict[str, list[str]] = {"own": [*own, str(SOURCES / "own.cpp")]}
    for name, isa in EIGEN_VARIANTS.items():
        # -DEigen=...: each variant's Eigen in its own namespace (no merging of ISA-specific inline code).
        jobs[name] = [*EIGEN_FLAGS, *isa, f"-DFPB_PREFIX={name}", f"-DEigen=fpb_{name}", str(SOURCES / "eigen.cpp")]
    jobs["dispatch"] = [str(SOURCES / "eigen_dispatch.cpp")]
    jobs["bench"] = [*EIGEN_FLAGS, str(SOURCES / "bench.cpp")]
    empty = BUILD / "empty.cpp"  # the bytes any .so has: the baseline of the size comparison
    empty.write_text('extern "C" __attribute__((visibility("default"))) int fpb_empty() { return 0; }\n')
    jobs["empty"] = [str(empty)]
    return {
        name: run_timed(["g++", *CXX_FLAGS, *args, "-c", "-o", str(BUILD / f"{name}.o")]) for name, args in jobs.items()
    }


def link(output: Path, objects: list[str], shared: bool) -> None:
    """Link BUILD/<object>.o files into ``output`` (a shared object when ``shared``), dropping unused sections."""
    shared_flag = ["-shared"] if shared else []
    paths = [str(BUILD / f"{name}.o") for name in objects]
    command = ["nice", "-n", "10", "g++", *shared_flag, "-Wl,--gc-sections", *paths, "-o", str(output)]
    subprocess.run(command, check=True)


def stripped_sizes() -> dict[str, Any]:
    """Bytes of stripped .so files: the own functions, the Eigen ones with a baseline and an AVX2+FMA build
    dispatched at run time (as the own target_clones are), the AVX2+FMA build alone, and an empty .so."""
    builds = {
        "own": ["own"],
        "eigen_dispatched": ["eigen_base", "eigen_avx2fma", "dispatch"],
        "eigen_avx2fma_only": ["eigen_avx2fma"],
        "empty": ["empty"],
    }
    sizes: dict[str, Any] = {}
    for name, objects in builds.items():
        path = BUILD / f"{name}.so"
        link(path, objects, shared=True)
        subprocess.run(["strip", "--strip-all", str(path)], check=True)
        sizes[f"{name}_so_bytes"] = path.stat().st_size
    own, eigen, empty = sizes["own_so_bytes"], sizes["eigen_dispatched_so_bytes"], sizes["empty_so_bytes"]
    sizes["eigen_minus_own_bytes"] = eigen - own
    sizes["eigen_over_own_code"] = round((eigen - empty) / (own - empty), 3)  # beyond an empty .so's bytes
    sizes["note"] = (
        "g++ -O3 -shared -Wl,--gc-sections, strip --strip-all; own: conv_pixels (avx2 + default clones), dense_row, "
        "wrappers; eigen_dispatched: the Eigen conv + dense built baseline and AVX2+FMA, picked by cpuid"
    )
    return sizes


def runtime_sources() -> dict[str, Any]:
    """The commit and whether the timed runtime sources differ from it (another engineer may be editing them)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain", *RUNTIME_FILES], cwd=ROOT, capture_output=True, text=True)
    return {"commit": head, "files": list(RUNTIME_FILES), "uncommitted_changes": bool(status.stdout.strip())}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Per case: own and headline Eigen ms, own / Eigen (> 1: Eigen faster), every variant's numbers, and whether
    each Eigen variant is within TOLERANCE (or bit-identical to) the own output."""
    cases: dict[str, Any] = {}
    for name, case in raw["cases"].items():
        variants = case["variants"]
        headline = next(v for v in EIGEN_VARIANTS if v in variants)  # the best build this CPU runs
        own_ms, eigen_ms = variants["own"]["median_ms"], variants[headline]["median_ms"]
        cases[name] = {
            "shape": case["shape"],
            "own_ms": round(own_ms, 4),
            "eigen_ms": round(eigen_ms, 4),
            "eigen_variant": headline,
            "own_over_eigen": round(own_ms / eigen_ms, 3),
            "max_rel_diff": max(v["rel_diff"] for k, v in variants.items() if k != "own"),
            "variants": {
                k: {
                    **{key: round(value, 4) for key, value in v.items() if key.endswith("_ms")},
                    "own_over_this": round(own_ms / v["median_ms"], 3),
                    "max_abs_diff": v["max_abs_diff"],
                    "rel_diff": v["rel_diff"],
                    "matches": v["rel_diff"] < TOLERANCE,
                    "bit_identical": v["max_abs_diff"] == 0.0,
                }
                for k, v in variants.items()
            },
            "reps": case["reps"],
            "calls_per_rep": case["inner"],
            "max_abs_y": case["max_abs_y"],
        }
    return cases


def verdict(cases: dict[str, Any], sizes: dict[str, Any]) -> str:
    """One line from the numbers: per case Eigen's win, loss or tie (CLEAR_WIN), accuracy, and the size cost."""
    sides: dict[str, list[str]] = {"eigen": [], "own": [], "tie": []}
    for name, case in cases.items():
        ratio = case["own_over_eigen"]
        side = "eigen" if ratio > CLEAR_WIN else "own" if ratio < 1 / CLEAR_WIN else "tie"
        sides[side].append(f"{name} {ratio:.2f}x")
    matches = all(v["matches"] for case in cases.values() for v in case["variants"].values())
    nofma = [n for n, c in cases.items() if c["variants"].get("eigen_avx2", {}).get("bit_identical")]
    parts = [
        f"Eigen ({next(iter(cases.values()))['eigen_variant']}) faster on: {', '.join(sides['eigen']) or 'none'}",
        f"own code faster on: {', '.join(sides['own']) or 'none'}",
        f"ties (within {CLEAR_WIN:.1f}x): {', '.join(sides['tie']) or 'none'}",
        f"outputs {'match' if matches else 'DO NOT match'} (rel diff < {TOLERANCE:g})",
        f"Eigen without FMA bit-identical to own on: {', '.join(nofma) or 'none'}",
        f"stripped .so {sizes['eigen_minus_own_bytes']:+d} bytes with Eigen "
        f"({sizes['own_so_bytes']} -> {sizes['eigen_dispatched_so_bytes']})",
    ]
    return "; ".join(parts) + " (own/Eigen time ratios, > 1: Eigen faster)."


def main() -> None:
    """Build, run the bench, write results/fp_backend_<isa>.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per case (all variants)")
    add_quick_flag(parser)
    args = parser.parse_args()
    if not (EIGEN_INCLUDE / "Eigen" / "Core").exists():
        raise SystemExit(f"Eigen headers not found in {EIGEN_INCLUDE}: apt-get install -y libeigen3-dev")
    if shutil.which("g++") is None:
        raise SystemExit("g++ is needed to build the bench")
    BUILD.mkdir(parents=True, exist_ok=True)
    compile_times = compile_objects()
    link(BUILD / "fp_backend_bench", ["bench", "own", *EIGEN_VARIANTS], shared=False)
    sizes = stripped_sizes()
    seconds = QUICK_SECONDS if args.quick else args.seconds
    out = subprocess.run([str(BUILD / "fp_backend_bench"), str(seconds)], check=True, capture_output=True, text=True)
    raw = json.loads(out.stdout)
    cases = summarize(raw)
    eigen_compile = [compile_times[name]["cpu_s"] for name in EIGEN_VARIANTS]
    results = {
        "verdict": verdict(cases, sizes),
        "isa": isa_name(),
        "threads": 1,
        "eigen_version": raw["eigen_version"],
        "eigen_threads": raw["eigen_threads"],
        "method": (
            f"one process, 1 thread, variants interleaved rep by rep (order rotated), medians of per-call ms over "
            f"reps (~{seconds:g} s per case); eigen conv: im2col (a 1x1 stride-1 conv reads x as is) + one Eigen "
            "GEMM (core module, not Tensor SpatialConvolution) + bias/affine pass; eigen dense: one GEMV / GEMM; "
            "own dense: the Linear op's loop of dense_row; random data, reference: the own output"
        ),
        "cases": cases,
        "sizes": sizes,
        "compile": {
            "note": "g++ -O3 -c under nice -n 10 on a shared machine; cpu_s: user + system",
            "objects": compile_times,
            "eigen_cpu_s_per_variant": round(sum(eigen_compile) / len(eigen_compile), 3),
        },
        "compiler": subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "flags": " ".join(CXX_FLAGS[:-1]),
        "runtime_sources": runtime_sources(),
    }
    path = write_result(f"fp_backend_{isa_name()}", results, quick=args.quick)
    print(results["verdict"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
