#!/usr/bin/env bash
# The GPU rows in one prepared run (issue 29), at most 9 minutes on one NVIDIA H200:
#   PYTHONPATH=src bash benchmarks/gpu_check.sh OUT             on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run OUT                  each stage's plumbing on the CPU at toy sizes
#                                                               (< 1 min on 2 cores; tests/test_gpu_check.py)
# Needs python3 (or $PYTHON) with torch >= 2.11, torchvision, timm, numpy, yaml, matplotlib; no network, no pip.
# Writes OUT/gpu_check_<stage>.json (GPU, torch, command, status, exit code, seconds, numbers; rewritten as
# the stage goes, so a stage cut by its cap keeps what it measured) and OUT/gpu_check_<stage>.log, prints a
# summary, and exits 1 when a stage is not ok. Scratch files go to a temporary folder, removed at the end.
#
# Stages in order of value, each under its own cap; one that fails or runs out does not stop the others:
#   tests     135 s  pytest: every test id naming CUDA first, then the trainer / resume / DDP tests
#   train     165 s  bnext train, bnext_tiny 224 px, synthetic: GPU defaults and train.amp=false, each
#                    without and with two KD teachers (benchmarks/gpu_train.py --bnext-train-only)
#   demo      125 s  the whole demo (python -m bnext.demo), start to exit, and its student's images/s
#   pipeline   75 s  the gpu input pipeline on 5,000 generated JPEGs: images/s, then bnext train's data-time
#                    share (1,000 classes: the model and shapes of stage 2, whose compiled graph it can reuse)
#   caps 500 s, + up to 5 s each to kill a stage that ignores SIGTERM, + ~5 s start-up, records, summary: < 540 s.
#
# Files that must travel with the checkout: none for stages 2-4 (the demo uses Fashion-MNIST from
# /usr/share/datasets/fashion-mnist when there, else it generates a stand-in of the same format and size).
# Stage 1 needs pytest; where the machine has none, carry the venv's pure-Python copy, the 7 ignored paths
#   .venv/lib/python3.11/site-packages/{pytest,_pytest,pluggy,iniconfig,packaging,pygments,py.py}   (15 MB)
# (appended to sys.path, so the machine's own packages win); with neither, stage 1 records "pytest missing".
set -u

DRY=
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
if [ $# -ne 1 ]; then
  echo "usage: bash benchmarks/gpu_check.sh [--dry-run] OUT" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bnext-gpu-check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 MPLBACKEND=Agg TMPDIR=$WORK
if [ -n "$DRY" ]; then
  export OMP_NUM_THREADS=1  # toy sizes: more threads only contend on a shared CPU
  PIPELINE=(--images 8 --classes 4 --val-per-class 1 --size 32 --batch 4 --batches 1 --train-images 4
    --train-batch 4 --gpu-workers 1 --set model.kwargs.width_multiplier=0.125)
else
  PIPELINE=(--images 5000 --classes 1000 --val-per-class 1 --batches 15 --train-images 5000)
fi

STAGES=()
run_stage() {  # NAME CAP COMMAND...: the command with --output OUT/gpu_check_NAME.json under its cap, then its record
  local name=$1 cap=$2 start rc command
  shift 2
  [ -n "$DRY" ] && cap=60
  local json="$OUT/gpu_check_$name.json" log="$OUT/gpu_check_$name.log"
  rm -f "$json"
  command=$(printf '%q ' timeout --kill-after=5 "$cap" "$@" --output "$json")
  echo "[$name] cap $cap s: ${command% }"
  start=$(date +%s.%N)
  timeout --kill-after=5 "$cap" "$@" --output "$json" >"$log" 2>&1
  rc=$?
  "$PY" -m benchmarks.gpu_check record "$json" --stage "$name" --exit-code "$rc" --start "$start" --cap "$cap" \
    --log "$log" --command "${command% }"
  STAGES+=("$name")
}

run_stage tests 135 "$PY" -m benchmarks.gpu_check tests ${DRY:+--dry-run}
run_stage train 165 "$PY" -m benchmarks.gpu_train --bnext-train-only ${DRY:+--dry-run}
run_stage demo 125 "$PY" -m benchmarks.gpu_check demo --work "$WORK/demo" ${DRY:+--dry-run}
run_stage pipeline 75 "$PY" -m benchmarks.input_pipeline --gpu-only --rounds 1 --folder "$WORK/jpegs" "${PIPELINE[@]}"
"$PY" -m benchmarks.gpu_check summary "$OUT" "${STAGES[@]}"
status=$?
echo "total ${SECONDS} s"
exit "$status"
