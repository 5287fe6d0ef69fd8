"""How fast the packed runtime would run on ARM cores, estimated without one: an ESTIMATE, not a measurement.

Method (the same on both architectures, so that it can be calibrated on the CPU at hand):

1. The runtime is built for the target (AArch64 with the cross compiler; x86-64 natively), statically, without
   OpenMP (1 thread), with a small probe program (a binary conv layer, or a whole ``.bnx`` model, run between
   two marker calls).
2. The probe runs under qemu user-mode emulation with a block-counting TCG plugin (built here from its source
   below): how many times each translated block of the real machine code executes in one run, between the
   markers. These counts are exact (they are the emulated program's own control flow: tile loops, k loops,
   epilogues, packing, im2col, the fp ops, memcpy), whatever the model's shapes.
3. Each executed block's instructions (objdump of the probe) go to ``llvm-mca``: a block that is a loop by
   itself (the popcount k loops) costs llvm-mca's simulated cycles per iteration; any other block its
   throughput bound (Block RThroughput: straight-line code overlaps with the blocks around it, and simulating it
   as a loop of itself would invent dependencies from one pass to the next). The estimate is the sum of
   count x cycles over all executed blocks: packing, im2col, the k loops, the reductions and epilogues, the fp
   ops, memcpy, everything the run executes.
4. Calibration: the same estimate for the x86 AVX2 kernels with ``-mcpu=znver3`` and ``znver2`` (this machine
   is an AMD EPYC family 23 model 49: Zen 2; see CALIBRATION_MODEL for why znver3's reading is the one carried
   over), against the same layers and models timed natively here (1 thread; the median of 11 runs, in 3
   rounds, the quietest kept), with the core clock measured by a chain of dependent adds. The ratio
   measured / estimated over the binary layers is carried over to the ARM estimates.
5. ARM cores: Cortex-A72 at 1.5 GHz (Raspberry Pi 4B) with ``-mcpu=cortex-a72`` (which LLVM schedules with its
   Cortex-A57 model, the A72's predecessor with the same pipelines); Cortex-A76 at 2.4 GHz with
   ``-mcpu=neoverse-n1`` (LLVM has no Cortex-A76 scheduling model: ``-mcpu=cortex-a76`` falls back to its
   Cortex-A57 model, reported too; Neoverse N1 is the server core derived from the A76, same pipelines).

    python benchmarks/arm_estimate.py [--models bnext_tiny bnext18 bnext_small] [--size 224]

Writes benchmarks/results/arm_estimate.json. Needs aarch64-linux-gnu-g++, qemu-aarch64, qemu-x86_64, cmake,
a host C compiler, llvm-mca (Debian ``llvm``; the newest installed is used) and PyTorch with bnext (to lower
the models); without them it says what is missing and exits 0.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "arm-estimate"
RESULT = ROOT / "benchmarks" / "results" / "arm_estimate.json"

# Binary multiply-accumulates per cycle at the A72's NEON peak: eor + cnt + add per 128 bits on 2 pipes.
A72_PEAK_MACS_PER_CYCLE = 128 * 2 / 3
CORES = {
    # name: (llvm-mca -mcpu, GHz, what it stands for)
    "cortex-a72": (
        "cortex-a72",
        1.5,
        "Cortex-A72 @ 1.5 GHz (Raspberry Pi 4B); LLVM schedules the A72 with its "
        "Cortex-A57 model (same pipelines: 3-wide, 2 NEON pipes, 1 load + 1 store)",
    ),
    "cortex-a76": ("neoverse-n1", 2.4, "Cortex-A76 @ 2.4 GHz; LLVM's Neoverse N1 model (the A76-derived core)"),
}
# Published numbers to compare with (1 thread). Sources: the LCE README (larq/compute-engine, "Performance"),
# daBNN docs/benchmark_and_comparison.md (JDAI-CV/dabnn); collected in shared/reference/EDGE.md.
PUBLISHED = {
    "lce": {
        "source": "Larq Compute Engine README, 1 thread",
        "models": {
            "QuickNet-Small": {"top1": 59.4, "rpi4b_ms": 27.7, "pixel1_ms": 16.8},
            "QuickNet": {"top1": 63.3, "rpi4b_ms": 45.0, "pixel1_ms": 25.5},
            "QuickNet-Large": {"top1": 66.9, "rpi4b_ms": 77.0, "pixel1_ms": 44.2},
            "Bi-Real-18 (LCE)": {"pixel1_ms": 41.6},
        },
    },
    "dabnn": {
        "source": "daBNN docs/benchmark_and_comparison.md, Pixel 1, 1 thread",
        "models": {"Bi-Real-18 (daBNN)": {"pixel1_ms": 61.3}},
        "layers_pixel1_ms": {"3x3 64ch 56px": 1.31, "3x3 128ch 28px": 0.96, "3x3 256ch 14px": 0.98,
                             "3x3 512ch 7px": 1.28},
    },
}  # fmt: skip
# x86 models read for the calibration; the ratio of the second is carried over. This CPU is a Zen 2 (family 23);
# LLVM's znver2 model dispatches 4 uops per cycle, which makes the AVX2 loop (38 uops) dispatch-bound in the
# model, where Zen 2 takes up to 6 per cycle from its op cache; the znver3 model (6 wide, the same 4 FP pipes
# with the shuffles on two of them as Zen 2) reads it as bound by the pipes, as the ARM models read the NEON loop.
CALIBRATION_MODELS = ("znver2", "znver3")
ROUNDS = 3  # timing rounds on x86 (the quietest kept)
CALIBRATION_MODEL = "znver3"
TOP1 = {"bnext_tiny": 72.4, "bnext18": 68.4, "bnext_small": 76.1}  # the paper's ImageNet top-1
TARGETS_A72_MS = {"bnext18": 45.0, "bnext_tiny": 77.0}  # QuickNet's and QuickNet-Large's RPi 4B times

PLUGIN_SOURCE = r"""
// A qemu TCG plugin (API version 1, QEMU 7.x): counts the executions of every translation block between
// executions of the blocks at `begin` and `end` (the probe's marker functions); writes "start last count".
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct {
  const char* target_name;
  struct { int min, cur; } version;
  bool system_emulation;
  union { struct { int smp_vcpus, max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb* tb, enum qemu_plugin_op op, void* ptr,
                                              uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb* tb);
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn* insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

typedef struct { uint64_t start, last, count, at_begin, total; } Block;
static Block* blocks;  // a fixed array: generated code increments `count` in place
static size_t used, room = 1 << 21;
static uint64_t begin_addr, end_addr;
static const char* out_path = "blocks.txt";

static void on_begin(unsigned int vcpu, void* data) {
  (void)vcpu, (void)data;
  for (size_t i = 0; i < used; ++i) blocks[i].at_begin = blocks[i].count;
}

static void on_end(unsigned int vcpu, void* data) {
  (void)vcpu, (void)data;
  for (size_t i = 0; i < used; ++i) {
    blocks[i].total += blocks[i].count - blocks[i].at_begin;
    blocks[i].at_begin = blocks[i].count;
  }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  if (used == room) {
    fprintf(stderr, "block counter: more than %zu translations\n", room);
    exit(1);
  }
  Block* b = &blocks[used++];
  b->start = qemu_plugin_tb_vaddr(tb);
  b->last = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, qemu_plugin_tb_n_insns(tb) - 1));
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
  if (b->start == begin_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
  if (b->start == end_addr) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
}

static void on_exit_(qemu_plugin_id_t id, void* data) {
  (void)id, (void)data;
  FILE* out = fopen(out_path, "w");
  if (out == NULL) return;
  for (size_t i = 0; i < used; ++i)
    if (blocks[i].total)
      fprintf(out, "%" PRIx64 " %" PRIx64 " %" PRIu64 "\n", blocks[i].start, blocks[i].last, blocks[i].total);
  fclose(out);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info,
                                                              int argc, char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (!strncmp(argv[i], "begin=", 6)) begin_addr = strtoull(argv[i] + 6, NULL, 16);
    if (!strncmp(argv[i], "end=", 4)) end_addr = strtoull(argv[i] + 4, NULL, 16);
    if (!strncmp(argv[i], "out=", 4)) out_path = argv[i] + 4;
  }
  blocks = calloc(room, sizeof(Block));
  if (blocks == NULL) return 1;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
  return 0;
}
"""

PROBE_SOURCE = r"""
// bnext_probe: one binary conv layer or one whole model run between two marker calls (for the block-counting
// plugin), timed natively (median of REPS after a warm-up run), and the core clock.
//   bnext_probe layer C O K STRIDE PAD H W PRELU PATH REPS | model FILE.bnx PATH REPS | clock
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bnext_runtime.h"
#include "kernels/binary_conv.h"

extern "C" __attribute__((noinline)) void bnext_probe_begin() { asm volatile("" ::: "memory"); }
extern "C" __attribute__((noinline)) void bnext_probe_end() { asm volatile("" ::: "memory"); }

namespace {

template <typename F>
void timed(int reps, const F& call) {
  call();  // warm-up: scratch allocated, pages touched
  std::vector<double> seconds;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    bnext_probe_begin();
    call();
    bnext_probe_end();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  std::printf("median_seconds %.9g\nmin_seconds %.9g\n", seconds[seconds.size() / 2], seconds[0]);
}

// The core clock: a chain of dependent adds (1 cycle each) timed, best of 10.
double clock_hz() {
  const long iterations = 50000000;
  double best = 1e30;
  for (int trial = 0; trial < 10; ++trial) {
    long n = iterations, x = 0;
    const auto start = std::chrono::steady_clock::now();
#if defined(__x86_64__)
    asm volatile("1:\n.rept 10\nadd $1, %0\n.endr\ndec %1\njnz 1b\n" : "+r"(x), "+r"(n));
#elif defined(__aarch64__)
    asm volatile("1:\n.rept 10\nadd %0, %0, #1\n.endr\nsubs %1, %1, #1\nb.ne 1b\n" : "+r"(x), "+r"(n));
#endif
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 10.0 * iterations / best;  // the fastest of the trials: the core's clock while it runs this thread
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "clock") {
    std::printf("clock_hz %.6g\n", clock_hz());
    return 0;
  }
  if (mode == "layer" && argc == 12) {
    bnext::BinaryConvSpec spec;
    spec.channels = std::atoll(argv[2]);
    spec.out_channels = std::atoll(argv[3]);
    spec.kernel_h = spec.kernel_w = std::atoll(argv[4]);
    spec.stride = std::atoll(argv[5]);
    spec.padding = std::atoll(argv[6]);
    const int64_t h = std::atoll(argv[7]), w = std::atoll(argv[8]);
    const bool prelu = std::atoi(argv[9]) != 0;
    const bnext::KernelPath path = bnext::kernel_path_from_name(argv[10]);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    const int64_t taps = spec.kernel_h * spec.kernel_w, row_bytes = (spec.channels + 31) / 32 * 4;
    std::vector<uint8_t> bits(spec.out_channels * taps * row_bytes);
    for (auto& b : bits) b = static_cast<uint8_t>(rng());
    std::vector<float> shift_in(spec.channels), scale(spec.out_channels, 0.01f), shift(spec.out_channels),
        slope(spec.out_channels, 0.25f);
    for (auto& v : shift_in) v = 0.1f * normal(rng);
    for (auto& v : shift) v = normal(rng);
    const bnext::BinaryConv conv(spec, bits.data(), shift_in.data(), scale.data(), shift.data(),
                                 prelu ? slope.data() : nullptr, path);
    std::vector<float> x(h * w * spec.channels);
    for (auto& v : x) v = normal(rng);
    std::vector<float> out(conv.out_height(h) * conv.out_width(w) * spec.out_channels);
    bnext::ConvScratch scratch;
    timed(std::atoi(argv[11]), [&] { conv.run(x.data(), 1, h, w, out.data(), scratch, 1); });
    return 0;
  }
  if (mode == "model" && argc == 5) {
    bnext_model* model = bnext_model_load_file(argv[2], argv[3]);
    if (model == nullptr) {
      std::fprintf(stderr, "%s\n", bnext_last_error());
      return 1;
    }
    int64_t c, h, w;
    bnext_model_input_shape(model, &c, &h, &w);
    std::vector<float> images(c * h * w);
    std::mt19937 rng(2);
    std::normal_distribution<float> normal;
    for (auto& v : images) v = normal(rng);
    std::vector<float> logits(bnext_model_num_classes(model));
    timed(std::atoi(argv[4]), [&] { bnext_model_run(model, images.data(), 1, c, h, w, logits.data()); });
    bnext_model_free(model);
    return 0;
  }
  std::fprintf(stderr, "usage: %s layer C O K STRIDE PAD H W PRELU PATH REPS | model FILE PATH REPS | clock\n",
               argv[0]);
  return 2;
}
"""


def run(cmd: list[str], **kwargs: Any) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs).stdout


def newest_llvm_mca() -> tuple[str, str] | None:
    """(path, version) of the newest llvm-mca installed (/usr/lib/llvm-N/bin first, then PATH)."""
    found = []
    for candidate in Path("/usr/lib").glob("llvm-*/bin/llvm-mca"):
        match = re.search(r"llvm-(\d+)", str(candidate))
        if match:
            found.append((int(match.group(1)), str(candidate)))
    if not found and shutil.which("llvm-mca"):
        found.append((0, shutil.which("llvm-mca")))
    if not found:
        return None
    path = max(found)[1]
    version = re.search(r"version (\S+)", run([path, "--version"]))
    return path, version.group(1) if version else "?"


@dataclass
class Target:
    """One architecture's build of the probe and its tools."""

    arch: str  # "aarch64" or "x86_64"
    triple: str
    cxx: str
    objdump: str
    nm: str
    qemu: list[str]
    probe: Path = Path()
    markers: tuple[str, str] = ("", "")
    _text: dict[int, str] = field(default_factory=dict)
    _addresses: list[int] = field(default_factory=list)
    _symbols: list[tuple[int, str]] = field(default_factory=list)

    def disassembly(self) -> dict[int, str]:
        if not self._text:
            for line in run([self.objdump, "-d", "--no-show-raw-insn", str(self.probe)]).splitlines():
                match = re.match(r"^\s+([0-9a-f]+):\s+(\S.*)$", line)
                if match:
                    self._text[int(match.group(1), 16)] = match.group(2)
            self._addresses = sorted(self._text)
        return self._text

    def addresses(self, start: int, last: int) -> list[int]:
        """The instruction addresses from ``start`` to ``last``, both included."""
        self.disassembly()
        return self._addresses[bisect.bisect_left(self._addresses, start) : bisect.bisect_right(self._addresses, last)]

    def symbol_of(self, address: int) -> str:
        """The (demangled) function containing ``address``."""
        if not self._symbols:
            text = run([self.nm, "-n", "-C", "--defined-only", str(self.probe)])
            for line in text.splitlines():
                parts = line.split(" ", 2)
                if len(parts) == 3 and parts[1].lower() in ("t", "w"):
                    self._symbols.append((int(parts[0], 16), parts[2]))
        low, high = 0, len(self._symbols)
        while high - low > 1:
            middle = (low + high) // 2
            if self._symbols[middle][0] <= address:
                low = middle
            else:
                high = middle
        return self._symbols[low][1] if self._symbols else "?"


def targets() -> dict[str, Target]:
    return {
        "aarch64": Target("aarch64", "aarch64-linux-gnu", "aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump",
                          "aarch64-linux-gnu-nm", ["qemu-aarch64", "-cpu", "cortex-a72"]),
        "x86_64": Target("x86_64", "x86_64-linux-gnu", "g++", "objdump", "nm", ["qemu-x86_64", "-cpu", "max"]),
    }  # fmt: skip


def missing_tools() -> list[str]:
    tools = ["cmake", "gcc", "g++", "objdump", "nm", "aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump",
             "qemu-aarch64", "qemu-x86_64"]  # fmt: skip
    lacking = [tool for tool in tools if shutil.which(tool) is None]
    if newest_llvm_mca() is None:
        lacking.append("llvm-mca")
    return lacking


def build(target: Target, jobs: int) -> None:
    """The runtime as a static library for ``target`` (no OpenMP: 1 thread) and the probe linked statically."""
    folder = BUILD / target.arch
    options = ["-DCMAKE_BUILD_TYPE=Release", "-DBNEXT_BUILD_TESTS=OFF", "-DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON"]
    if target.arch == "aarch64":
        options.append(f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'runtime' / 'cmake' / 'aarch64-linux-gnu.cmake'}")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    run(["cmake", "-S", str(ROOT / "runtime"), "-B", str(folder), *generator, *options])
    run(["cmake", "--build", str(folder), "-j", str(jobs), "--target", "bnext_runtime_static"])
    source = folder / "bnext_probe.cpp"
    source.write_text(PROBE_SOURCE)
    target.probe = folder / "bnext_probe"
    run([target.cxx, "-O2", "-std=c++17", "-static", f"-I{ROOT / 'runtime' / 'include'}",
         f"-I{ROOT / 'runtime' / 'src'}", str(source), str(folder / "libbnext_runtime_static.a"), "-o",
         str(target.probe)])  # fmt: skip
    symbols = {}
    for line in run([target.nm, str(target.probe)]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in ("bnext_probe_begin", "bnext_probe_end"):
            symbols[parts[2]] = parts[0]
    target.markers = (symbols["bnext_probe_begin"], symbols["bnext_probe_end"])


def build_plugin() -> Path:
    folder = BUILD / "plugin"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "block_counter.c").write_text(PLUGIN_SOURCE)
    plugin = folder / "block_counter.so"
    run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", str(folder / "block_counter.c"), "-o", str(plugin)])
    return plugin


def profile(target: Target, plugin: Path, args: list[str]) -> dict[tuple[int, int], int]:
    """{(first, last instruction address): executions} of the blocks one probe run executes."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "blocks.txt"
        begin, end = target.markers
        spec = f"{plugin},begin={begin},end={end},out={out}"
        run([*target.qemu, "-plugin", spec, str(target.probe), *args, "1"])
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for line in out.read_text().splitlines():
            start, last, count = line.split()
            counts[(int(start, 16), int(last, 16))] += int(count)
    return dict(counts)


# ---------------------------------------------------------------- llvm-mca
def clean(target: Target, text: str, label: str) -> str:
    """One objdump instruction as llvm-mc reads it: annotations dropped, code addresses made a local label."""
    text = re.sub(r"\s*<[^>]*>", "", text)
    text = text.split("//")[0] if target.arch == "aarch64" else text.split("#")[0]
    text = text.strip()
    mnemonic = text.split()[0] if text else "nop"
    if target.arch == "aarch64":
        if re.match(r"^(b|bl|b\.\w+|cbn?z|tbn?z|adrp?|ldr|ldrsw|prfm)$", mnemonic):
            text = re.sub(r"(?<=[\s,])(0x)?[0-9a-f]{4,}$", label, text)
    else:
        text = re.sub(r"^(bnd|notrack)\s+", "", text)
        if re.match(r"^(cs|ds|data16|addr32|es|fs|gs|lock)\b", mnemonic) and "nop" in text:
            text = "nop"
        if re.match(r"^(j\w+|call|jmp)$", mnemonic) and re.search(r"\s[0-9a-f]+$", text):
            text = re.sub(r"\s[0-9a-f]+$", " " + label, text)
    return text or "nop"


def block_lines(target: Target, start: int, last: int, label: str) -> list[str]:
    text = target.disassembly()
    return [clean(target, text[address], label) for address in target.addresses(start, last)]


def is_loop(target: Target, start: int, last: int) -> bool:
    """Whether the block ends in a branch back to its own start (a loop that is one block: the k loops)."""
    text = target.disassembly().get(last, "")
    return bool(re.match(rf"^\S+\s+(.*,\s*)?(0x)?0*{start:x}\b", text))


def mca_cycles(
    target: Target, blocks: list[tuple[int, int]], cpu: str, mca: str, iterations: int = 100
) -> dict[tuple[int, int], float]:
    """Cycles per execution of each block on llvm-mca's model of ``cpu``.

    A block that loops on itself gets the cycles per iteration of llvm-mca's simulation (its dependencies from
    one iteration to the next are real: the accumulators). Any other block gets its throughput bound (Block
    RThroughput): simulated as a loop of itself, a straight-line block would chain each pass's results into the
    next pass's inputs (a register it writes late and reads early), dependencies that do not exist where the
    block runs between others, which the core overlaps with the blocks around it.
    """
    label = ".Lbranch_target"  # every branch of every block goes here (llvm-mca ignores where it goes)
    texts = {b: block_lines(target, b[0], b[1], label) for b in blocks}
    keys = {b: hashlib.sha1("\n".join(lines).encode()).hexdigest()[:20] for b, lines in texts.items()}
    cache = BUILD / f"mca-{target.arch}-{cpu}.json"  # by the blocks' text: valid across rebuilds
    known: dict[str, list[float]] = json.loads(cache.read_text()) if cache.exists() else {}
    todo = sorted({keys[b]: b for b in blocks if keys[b] not in known}.items())
    if todo:
        regions = [(f"r{key}", texts[b]) for key, b in todo]
        broken: set[tuple[int, int]] = set()  # (region, line) that llvm-mca cannot read: made nops
        for _attempt in range(50):
            source, line_of = [f"{label}:"], {}
            for r, (name, body) in enumerate(regions):
                source.append(f"# LLVM-MCA-BEGIN {name}")  # "#" starts a line comment on both targets
                for i, line in enumerate(body):
                    source.append("nop" if (r, i) in broken else line)
                    line_of[len(source)] = (r, i)
                source.append(f"# LLVM-MCA-END {name}")
            with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as handle:
                handle.write("\n".join(source) + "\n")
                path = handle.name
            result = subprocess.run(
                [mca, f"-mtriple={target.triple}", f"-mcpu={cpu}", f"-iterations={iterations}",
                 "-instruction-info=false", "-resource-pressure=false", path],
                capture_output=True, text=True,
            )  # fmt: skip
            os.unlink(path)
            bad = {line_of[int(n)] for n in re.findall(r"\.s:(\d+):\d+: error", result.stderr) if int(n) in line_of}
            if result.returncode == 0:
                break
            if not bad:
                raise RuntimeError(f"llvm-mca failed: {result.stderr[-2000:]}")
            broken |= bad
        else:
            raise RuntimeError("llvm-mca kept failing on the blocks' assembly")
        pattern = r"Code Region - r([0-9a-f]+)\s.*?Total Cycles:\s+(\d+).*?Block RThroughput:\s+([\d.]+)"
        for name, total, bound in re.findall(pattern, result.stdout, re.S):
            known[name] = [int(total) / iterations, float(bound)]
        cache.write_text(json.dumps(known))
    cycles = {b: known[keys[b]][0 if is_loop(target, *b) else 1] for b in blocks}
    for b, lines in texts.items():
        # qemu runs x86 string instructions (glibc's memset / memcpy for large sizes: rep stos / rep movs) one
        # element per block execution; llvm-mca knows no length. Fast strings move about 32 bytes per cycle.
        match = re.match(r"^rep(?:z|nz)?\s+(stos|movs)(\w?)\s*(%(\w+))?", lines[0]) if len(lines) == 1 else None
        if match:
            width = {"b": 1, "w": 2, "l": 4, "q": 8}.get(match.group(2)) or {"al": 1, "ax": 2, "eax": 4}.get(
                match.group(4) or "", 8
            )
            cycles[b] = width / 32
    return cycles


# ---------------------------------------------------------------- what the time is spent on
def category(symbol: str) -> str:
    """The part of the runtime a function belongs to."""
    rules = [
        (r"pack_pixels", "binary: activation packing"),
        (r"kernels::(neon|x86)::|tile_|group_rows|half_rows|count_", "binary: popcount GEMM + epilogue"),
        (r"BinaryConv|Im2col|run_gemm|split_nibbles|kernels::", "binary: driver + bit im2col"),
        (r"Conv2d|conv_pixel", "fp: conv2d (stem, shortcuts)"),
        (r"UnitTail|tail_pixels|add_pixels|channel_means|unit_tail|sum_rows|SumSource", "fp: unit tails"),
        (r"[Dd]ense|Linear", "fp: dense (classifier, gates)"),
        (r"[Pp]ool|prelu_pixel|affine_pixel|PRelu|ChannelAffine|Concat|Add\b", "fp: small ops"),
        (r"mem(cpy|set|move)|__memcpy|__memset", "memory copies"),
        (r"exp|log|sigmoid", "libm"),
    ]
    for pattern, name in rules:
        if re.search(pattern, symbol):
            return name
    return "other"


def estimate(
    target: Target, counts: dict[tuple[int, int], int], cpu: str, mca: str, key_instruction: str
) -> dict[str, Any]:
    """Cycles of one run: total, by category, and the popcount inner loop (blocks with ``key_instruction``)."""
    cycles = mca_cycles(target, sorted(counts), cpu, mca)
    by_category: dict[str, float] = defaultdict(float)
    inner = {"cycles": 0.0, "vector_popcounts": 0, "executions": 0}
    for block, count in counts.items():
        spent = count * cycles[block]
        by_category[category(target.symbol_of(block[0]))] += spent
        keys = sum(1 for line in block_lines(target, *block, "") if line.split()[0] == key_instruction)
        if keys >= 8:  # the k loop (16 cnt per step on NEON; vpshufb pairs on AVX2), unrolled tiles included
            inner["cycles"] += spent
            inner["vector_popcounts"] += keys * count
            inner["executions"] += count
    return {"cycles": sum(by_category.values()), "by_category": dict(by_category), "inner_loop": inner}


# ---------------------------------------------------------------- models
@dataclass
class Layer:
    name: str
    channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    height: int
    width: int
    prelu: bool

    def args(self, path: str) -> list[str]:
        spec = [self.channels, self.out_channels, self.kernel, self.stride, self.padding, self.height, self.width]
        return ["layer", *map(str, spec), "1" if self.prelu else "0", path]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.out_channels, self.kernel, self.stride, self.padding, self.height, self.width,
                int(self.prelu))  # fmt: skip

    def macs(self) -> int:
        oh = (self.height + 2 * self.padding - self.kernel) // self.stride + 1
        ow = (self.width + 2 * self.padding - self.kernel) // self.stride + 1
        return oh * ow * self.out_channels * self.channels * self.kernel**2


def lower(name: str, size: int) -> tuple[Path, list[Layer], dict[str, int]]:
    """The model's .bnx at ``size`` px (random weights: the time does not depend on them), its binary convs with
    their input shapes, and the fp MACs of its conv2d / linear ops."""
    import torch

    from bnext import create_model
    from bnext.card import ModelCard
    from bnext.deploy.export import packed_model
    from bnext.deploy.fileformat import write_bnx
    from bnext.deploy.reference import run_graph
    from bnext.nn import set_temperature

    torch.manual_seed(0)
    model = create_model(name).eval()
    set_temperature(model, 0.0)
    header, arrays, _ = packed_model(model, ModelCard(name, 1000, input_size=size))
    path = BUILD / "models" / f"{name}_{size}.bnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bnx(path, header, arrays)
    layers: list[Layer] = []
    fp_macs = {"conv2d": 0, "linear": 0}

    def observe(op: dict[str, Any], inputs: dict[str, Any]) -> None:
        a, shape = op["attrs"], tuple(inputs["x"].shape) if "x" in inputs else ()
        if op["op"] == "binary_conv":
            layers.append(Layer(op["name"], a["in_channels"], a["out_channels"], a["kernel"], a["stride"],
                                a["padding"], shape[2], shape[3], "slope" in op["params"]))  # fmt: skip
        elif op["op"] == "conv2d":
            oh = (shape[2] + 2 * a["padding"] - a["kernel"]) // a["stride"] + 1
            ow = (shape[3] + 2 * a["padding"] - a["kernel"]) // a["stride"] + 1
            fp_macs["conv2d"] += oh * ow * a["out_features"] * a["in_features"]
        elif op["op"] == "linear":
            fp_macs["linear"] += a["out_features"] * a["in_features"]

    with torch.no_grad():
        run_graph(header["graph"], arrays, torch.zeros(1, 3, size, size), observe)
    return path, layers, fp_macs


def native_seconds(target: Target, args: list[str], reps: int) -> float:
    out = run([str(target.probe), *args, str(reps)])
    return float(re.search(r"median_seconds (\S+)", out).group(1))


# ---------------------------------------------------------------- the estimate
def calibrate(x86: Target, plugin: Path, mca: str, layers: list[Layer], models: dict[str, Path]) -> dict[str, Any]:
    """Measured / estimated on this x86 CPU (AVX2 kernels, znver2 model), per layer and per model."""
    clocks = [clock_hz(x86)]
    rows: list[dict[str, Any]] = []
    measured_total, estimated_cycles = 0.0, defaultdict(float)
    # Each layer timed in ROUNDS rounds spread over the calibration (the layers interleaved), the median of each
    # round's reps, and the quietest round kept: other jobs on this shared machine only ever add time.
    timings: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for _round in range(ROUNDS):
        for layer in layers:
            timings[layer.shape].append(native_seconds(x86, layer.args("avx2"), 11))
    for layer in layers:
        args = layer.args("avx2")
        measured = min(timings[layer.shape])
        counts = profile(x86, plugin, args)
        row = {"layer": f"{layer.kernel}x{layer.kernel} {layer.channels}->{layer.out_channels} s{layer.stride} "
                        f"{layer.height}px", "measured_ms": round(measured * 1e3, 4)}  # fmt: skip
        for cpu in CALIBRATION_MODELS:
            estimated_cycles[cpu] += estimate(x86, counts, cpu, mca, "vpshufb")["cycles"]
            row[f"estimated_mcycles_{cpu}"] = round(estimate(x86, counts, cpu, mca, "vpshufb")["cycles"] / 1e6, 4)
        measured_total += measured
        rows.append(row)
    clocks.append(clock_hz(x86))
    clock = max(clocks)
    for row in rows:
        for cpu in CALIBRATION_MODELS:
            row[f"ratio_{cpu}"] = round(row["measured_ms"] / (row[f"estimated_mcycles_{cpu}"] * 1e9 / clock), 3)
    ratios = {cpu: round(measured_total / (estimated_cycles[cpu] / clock), 3) for cpu in CALIBRATION_MODELS}
    model_rows = []
    for name, path in models.items():
        args = ["model", str(path), "avx2"]
        measured = min(native_seconds(x86, args, 5) for _round in range(ROUNDS))
        counts = profile(x86, plugin, args)
        row = {"model": name, "measured_ms": round(measured * 1e3, 3)}
        for cpu in CALIBRATION_MODELS:
            est = estimate(x86, counts, cpu, mca, "vpshufb")
            binary = sum(v for k, v in est["by_category"].items() if k.startswith("binary"))
            # What the rest (fp ops, executor) needs for the whole model's measured time, the binary convs
            # counted at the layers' ratio.
            row[f"fp_ratio_{cpu}"] = round(
                (measured - ratios[cpu] * binary / clock) / ((est["cycles"] - binary) / clock), 3
            )
            row[f"estimated_ms_{cpu}"] = round(est["cycles"] / clock * 1e3, 3)
            row[f"ratio_{cpu}"] = round(measured / (est["cycles"] / clock), 3)
            row[f"estimated_share_{cpu}"] = {
                k: round(v / est["cycles"], 3) for k, v in sorted(est["by_category"].items())
            }
        model_rows.append(row)
    return {
        "cpu": cpu_name(),
        "kernel_path": "avx2 (1 thread)",
        "clock_ghz_measured": [round(c / 1e9, 3) for c in clocks],
        "clock_ghz_used": round(clock / 1e9, 3),
        "binary_layers": rows,
        "binary_layers_ratio": ratios,
        "ratio_carried_over": ratios[CALIBRATION_MODEL],
        "fp_ratio_carried_over": (
            statistics.median(row[f"fp_ratio_{CALIBRATION_MODEL}"] for row in model_rows)
            if model_rows
            else ratios[CALIBRATION_MODEL]
        ),
        "llvm_mca_cpu_carried_over": CALIBRATION_MODEL,
        "models": model_rows,
    }


def clock_hz(target: Target) -> float:
    return float(re.search(r"clock_hz (\S+)", run([str(target.probe), "clock"])).group(1))


def cpu_name() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = re.search(r"model name\s*:\s*(.*)", info)
    family = re.search(r"cpu family\s*:\s*(\d+)", info)
    model = re.search(r"^model\s*:\s*(\d+)", info, re.M)
    return (
        f"{name.group(1) if name else '?'} (family {family.group(1) if family else '?'}, model "
        f"{model.group(1) if model else '?'})"
    )


def arm_layer(layer: Layer, aarch64: Target, plugin: Path, mca: str, ratio: float) -> dict[str, Any]:
    counts = profile(aarch64, plugin, layer.args("neon"))
    row: dict[str, Any] = {"binary_macs": layer.macs()}
    for core, (cpu, ghz, _) in CORES.items():
        est = estimate(aarch64, counts, cpu, mca, "cnt")
        inner = est["inner_loop"]
        ms = est["cycles"] * ratio / (ghz * 1e9) * 1e3
        row[core] = {
            "cycles_mca": round(est["cycles"]),
            "ms": round(ms, 4),
            "inner_loop_cycles_per_k_step": round(inner["cycles"] / max(inner["executions"], 1), 2),
            # 128 binary MACs per vcntq_u8 (2 channels x 64 bits) against the A72 peak of 85.3 per cycle
            "inner_loop_peak_fraction": round(128 * inner["vector_popcounts"] / max(inner["cycles"], 1)
                                              / A72_PEAK_MACS_PER_CYCLE, 3),
            "layer_peak_fraction": round(layer.macs() / est["cycles"] / A72_PEAK_MACS_PER_CYCLE, 3),
            "share": {k: round(v / est["cycles"], 3) for k, v in sorted(est["by_category"].items())},
        }  # fmt: skip
    cycles_a76 = estimate(aarch64, counts, "cortex-a76", mca, "cnt")["cycles"]
    row["cortex-a76"]["ms_llvm_cortex-a76_model(a57)"] = round(cycles_a76 * ratio / 2.4e6, 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bnext_tiny", "bnext18", "bnext_small"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calibration-models", nargs="*", default=["bnext18"],
                        help="models also timed end to end on x86 for the calibration")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    lacking = missing_tools()
    try:
        import torch  # noqa: F401

        import bnext  # noqa: F401
    except ImportError:
        lacking.append("python packages torch and bnext")
    if lacking:
        print(f"arm_estimate: skipped, missing: {', '.join(lacking)} (Debian: g++-aarch64-linux-gnu qemu-user llvm)")
        return 0
    mca, mca_version = newest_llvm_mca()
    found = targets()
    for target in found.values():
        print(f"building the runtime and probe for {target.arch} ...", flush=True)
        build(target, args.jobs)
    plugin = build_plugin()
    aarch64, x86 = found["aarch64"], found["x86_64"]

    lowered = {name: lower(name, args.size) for name in args.models}
    # Calibration layers: every distinct binary conv of the calibration models (3x3 and 1x1, 7 to 112 px).
    calibration_layers: dict[tuple[int, ...], Layer] = {}
    for name in args.calibration_models:
        for layer in lowered[name][1] if name in lowered else lower(name, args.size)[1]:
            calibration_layers.setdefault(layer.shape, layer)
    if "bnext_tiny" in lowered:  # a few 1x1 layers too (bnext18 has none)
        for layer in lowered["bnext_tiny"][1]:
            if layer.kernel == 1 and layer.height in (56, 14):
                calibration_layers.setdefault(layer.shape, layer)
    print(f"calibrating on x86: {len(calibration_layers)} layers ...", flush=True)
    calibration = calibrate(x86, plugin, mca, list(calibration_layers.values()),
                            {n: lowered[n][0] for n in args.calibration_models if n in lowered})  # fmt: skip
    ratio = calibration["ratio_carried_over"]
    print(f"measured / estimated on x86 = {ratio}", flush=True)

    results: dict[str, Any] = {}
    layer_cache: dict[tuple[int, ...], dict[str, Any]] = {}
    for name, (path, layers, fp_macs) in lowered.items():
        print(f"estimating {name} ({len(layers)} binary convs) ...", flush=True)
        rows = []
        for layer in layers:
            if layer.shape not in layer_cache:
                layer_cache[layer.shape] = arm_layer(layer, aarch64, plugin, mca, ratio)
            rows.append(
                {
                    "name": layer.name,
                    "shape": f"{layer.kernel}x{layer.kernel} {layer.channels}->"
                    f"{layer.out_channels} s{layer.stride} {layer.height}px",
                    **layer_cache[layer.shape],
                }
            )
        counts = profile(aarch64, plugin, ["model", str(path), "neon"])
        model_row: dict[str, Any] = {"top1_paper": TOP1.get(name), "binary_macs": sum(layer.macs() for layer in layers),
                                     "fp_macs": fp_macs, "layers": rows}  # fmt: skip
        for core, (cpu, ghz, _) in CORES.items():
            est = estimate(aarch64, counts, cpu, mca, "cnt")
            binary = sum(v for k, v in est["by_category"].items() if k.startswith("binary"))
            to_ms = ratio / (ghz * 1e9) * 1e3
            fp_ratio = calibration["fp_ratio_carried_over"]
            model_row[core] = {
                "end_to_end_ms": round(est["cycles"] * to_ms, 2),
                # the fp parts at the ratio the x86 whole-model check needed for them (see calibration.models)
                "end_to_end_ms_fp_at_model_ratio": round((binary + (est["cycles"] - binary) * fp_ratio / ratio)
                                                          * to_ms, 2),
                "binary_convs_ms": round(binary * to_ms, 2),
                "fp_and_other_ms": round((est["cycles"] - binary) * to_ms, 2),
                "by_category_ms": {k: round(v * to_ms, 3) for k, v in sorted(est["by_category"].items())},
                "sum_of_layer_estimates_ms": round(sum(r[core]["ms"] for r in rows), 2),
            }  # fmt: skip
        target = TARGETS_A72_MS.get(name)
        if target is not None:
            model_row["target_a72_ms"] = target
            model_row["meets_target_a72"] = model_row["cortex-a72"]["end_to_end_ms"] <= target
        results[name] = model_row

    dabnn = []
    for label, published in PUBLISHED["dabnn"]["layers_pixel1_ms"].items():
        k, channels, side = re.match(r"(\d)x\d (\d+)ch (\d+)px", label).groups()
        for row in layer_cache.items():
            shape, data = row
            if shape[:7] == (int(channels), int(channels), int(k), 1, 1, int(side), int(side)):
                dabnn.append(
                    {
                        "layer": label,
                        "dabnn_pixel1_ms": published,
                        "bnext_a76_estimate_ms": data["cortex-a76"]["ms"],
                        "bnext_a72_estimate_ms": data["cortex-a72"]["ms"],
                    }
                )
                break
    output = {
        "estimate": True,
        "what": "estimated single-thread latency of the packed runtime's NEON path on ARM cores, 1 image at "
        f"{args.size} px; no ARM CPU was used",
        "method": "Method " + __doc__.split("Method ")[1].split("    python")[0].strip(),
        "llvm_mca": {"path": mca, "version": mca_version},
        "cores": {k: {"llvm_mca_cpu": v[0], "ghz": v[1], "note": v[2]} for k, v in CORES.items()},
        "calibration": calibration,
        "calibration_ratio_used": ratio,
        "a72_peak_binary_macs_per_cycle": round(A72_PEAK_MACS_PER_CYCLE, 2),
        "models": results,
        "dabnn_layers": dabnn,
        "published": PUBLISHED,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=1) + "\n")
    print(f"wrote {args.output}")
    for name, row in results.items():
        a72, a76 = row["cortex-a72"], row["cortex-a76"]
        print(f"{name}: A72 {a72['end_to_end_ms']} ms (binary {a72['binary_convs_ms']}), A76 {a76['end_to_end_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
