#!/usr/bin/env bash
# The runtime built for AArch64 with Debian's cross compiler and its tests run under user-mode emulation, on an
# x86-64 host: the kernel tests (the NEON and the portable path, exactly against a float conv of the signs),
# the container / JSON tests, and the whole-model test on cases exported here with PyTorch (bnext_tiny,
# bnext18, a PTQ bnext_small; logits against the torch reference, PyTorch eval and the host's runtime).
#
#   runtime/tests/run_aarch64.sh [BUILD_DIR]        (default build/runtime-aarch64)
#
# Needs g++-aarch64-linux-gnu and qemu-user (the Makefile installs them); without them it says so and exits 0.
# Environment: PYTHON (the interpreter with torch and bnext for the model cases; default .venv/bin/python,
# the cases are skipped with a note when it cannot import them), JOBS (build jobs, default 2),
# QEMU_CPU_MODEL (the emulated core, default cortex-a72: an ARMv8.0 core, so that nothing newer slips in).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(realpath -m "${1:-$root/build/runtime-aarch64}")
python=${PYTHON:-$root/.venv/bin/python}
jobs=${JOBS:-2}
cpu=${QEMU_CPU_MODEL:-cortex-a72}
sysroot=/usr/aarch64-linux-gnu

for tool in aarch64-linux-gnu-g++ aarch64-linux-gnu-gcc qemu-aarch64 cmake; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "note: $tool is missing (packages g++-aarch64-linux-gnu, qemu-user): the AArch64 tests are skipped"
    exit 0
  fi
done
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

start=$SECONDS
cmake -S "$root/runtime" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/runtime/cmake/aarch64-linux-gnu.cmake" >/dev/null
cmake --build "$build" -j "$jobs" --target runtime_tests
echo "aarch64 build: $((SECONDS - start)) s"

# The model cases, exported on this host (its runtime's logits included when the bnext_runtime package is
# installed): regenerated each run, a few seconds.
cases="$build/model-cases"
if "$python" -c "import torch, bnext" >/dev/null 2>&1; then
  rm -rf "$cases"
  HF_HUB_OFFLINE=1 "$python" "$root/runtime/tests/make_model_cases.py" "$cases"
  export BNEXT_MODEL_CASES="$cases"
else
  echo "note: $python cannot import torch and bnext: the whole-model cases are skipped"
fi

start=$SECONDS
# qemu-user cannot fork a process that has started threads (it asserts in its TCG code): that one test skips.
BNEXT_TESTS_UNDER_QEMU=1 qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$build/runtime_tests"
echo "aarch64 tests under qemu-aarch64 -cpu $cpu: $((SECONDS - start)) s"
