#!/usr/bin/env bash
# Builds the libFuzzer target fuzz_load (clang, ASan + UBSan) and runs it for a bounded time over a copy of
# the seed corpus. A crash, leak, timeout or out-of-memory input fails the run and is copied into
# runtime/fuzz/regressions/ (commit it: tests/test_bnx_file.cpp replays every file there).
#
#   runtime/fuzz/run_fuzz.sh BUILD_DIR SECONDS
#
# Environment: BNEXT_FUZZ_MODE=auto|full|container (auto: the whole load through the C API when
# src/c_api.cpp exists, else the container layer alone), BNEXT_FUZZ_JOBS (build parallelism, default 2),
# BNEXT_FUZZ_ARGS (extra libFuzzer flags, e.g. "-max_len=65536 -seed=1").
# Nothing is written into tracked directories except regressions/, and only on a finding.
set -euo pipefail

if [[ $# -ne 2 ]] || ! [[ "$2" =~ ^[0-9]+$ ]] || [[ "$2" -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runtime_dir="$(dirname "$fuzz_dir")"
mkdir -p "$1"
build_dir="$(cd "$1" && pwd)"
seconds="$2"

case "$build_dir/" in
  "$fuzz_dir"/*) echo "BUILD_DIR must be outside $fuzz_dir (tracked files)" >&2; exit 2 ;;
esac

mode="${BNEXT_FUZZ_MODE:-auto}"
if [[ "$mode" == auto ]]; then
  if [[ -f "$runtime_dir/src/c_api.cpp" ]]; then mode=full; else mode=container; fi
fi
case "$mode" in
  full) cmake_flags=(-DBNEXT_FUZZ=ON -DBNEXT_FUZZ_CONTAINER_ONLY=OFF -DBNEXT_BUILD_TESTS=OFF) ;;
  container) cmake_flags=(-DBNEXT_FUZZ_CONTAINER_ONLY=ON -DBNEXT_FUZZ=OFF) ;;
  *) echo "BNEXT_FUZZ_MODE must be auto, full or container (got $mode)" >&2; exit 2 ;;
esac

command -v clang >/dev/null && command -v clang++ >/dev/null || { echo "clang and clang++ are needed" >&2; exit 2; }
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
echo "== building fuzz_load ($mode) in $build_dir"
CC=clang CXX=clang++ cmake -S "$runtime_dir" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "${cmake_flags[@]}" >"$build_dir/cmake.log" 2>&1 || { cat "$build_dir/cmake.log" >&2; exit 1; }
cmake --build "$build_dir" --target fuzz_load --parallel "${BNEXT_FUZZ_JOBS:-2}"

# The working corpus: seeds and past findings copied in (libFuzzer adds what it finds there).
work="$build_dir/fuzz-corpus"
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$work"
rm -rf "$artifacts"
mkdir -p "$artifacts"
for dir in "$fuzz_dir/corpus" "$fuzz_dir/regressions"; do
  [[ -d "$dir" ]] || continue
  find "$dir" -maxdepth 1 -type f ! -name '.gitkeep' -exec cp -f {} "$work/" \;
done

log="$build_dir/fuzz.log"
echo "== fuzzing for ${seconds}s (log: $log)"
set +e
# halt_on_error: a UBSan report is a finding, not a warning that scrolls by.
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}" \
ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}" \
  "$build_dir/fuzz_load" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict="$fuzz_dir/bnx.dict" -artifact_prefix="$artifacts/" ${BNEXT_FUZZ_ARGS:-} "$work" >"$log" 2>&1
status=$?
set -e

grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -n 2 || true
grep -E '^stat::' "$log" || true

shopt -s nullglob
found=("$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*)
if [[ $status -ne 0 || ${#found[@]} -gt 0 ]]; then
  mkdir -p "$fuzz_dir/regressions"
  for file in "${found[@]}"; do
    cp -f "$file" "$fuzz_dir/regressions/"
    echo "finding: $fuzz_dir/regressions/$(basename "$file")"
  done
  tail -n 60 "$log" >&2
  echo "fuzz_load FAILED (status $status): ${#found[@]} input(s) saved to runtime/fuzz/regressions/;" \
    "fix the bug, then commit them" >&2
  exit 1
fi
echo "fuzz_load: no findings in ${seconds}s ($(ls "$work" | wc -l) inputs in the working corpus)"
