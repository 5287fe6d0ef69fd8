"""The Python side of benchmarks/gpu_check.sh: stages 1 (tests) and 3 (demo), each stage's record, the summary.

    python -m benchmarks.gpu_check tests --output FILE [--dry-run]
    python -m benchmarks.gpu_check demo --output FILE --work DIR [--dry-run]
    python -m benchmarks.gpu_check record FILE --stage NAME --exit-code RC --start EPOCH --cap S --log LOG --command C
    python -m benchmarks.gpu_check summary OUT STAGE...

``record`` and ``summary`` import no torch (they run after every stage, and after a stage that died).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

TEST_SELECTION = ["tests", "-k", "cuda or test_trainer or test_ddp"]  # every CUDA case + trainer / resume / DDP
DRY_RUN_TESTS = ["tests/test_hardware.py", "-k", "cuda"]  # a few fast CPU tests: the plumbing only
TARGETS = {  # the GPU issue's targets, beside the numbers they judge
    "train": {"defaults_images_per_s_min": 2800, "defaults_kd_images_per_s_min": 1800},
    "demo": {"wall_seconds_max": 90},
    "pipeline": {"gpu_pipeline_images_per_s_min": 8000, "train_data_time_share_max": 0.05},
}
CARRIED_SITE = ".venv/lib/python3*/site-packages"  # where a carried pure-Python pytest is looked for


# ----------------------------------------------------------------------------- stage 1: tests
def import_pytest() -> tuple[Any, str | None]:
    """(pytest, where it came from): this Python's, else a copy carried under CARRIED_SITE, else (None, None).

    A carried copy is appended to ``sys.path``, so the machine's own packages (torch above all) win.
    """
    try:
        import pytest

        return pytest, "installed"
    except ImportError:
        pass
    for site in sorted(Path().glob(CARRIED_SITE)):
        if (site / "_pytest").is_dir():
            sys.path.append(str(site.resolve()))
            import pytest

            return pytest, f"carried ({site})"
    return None, None


class Tally:
    """pytest plugin: runs test ids that name CUDA first and rewrites the stage's JSON as each test ends."""

    def __init__(self, save) -> None:
        self.save = save
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.skips: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.collection_errors: list[str] = []
        self.running: str | None = None

    def pytest_collection_modifyitems(self, items) -> None:
        items.sort(key=lambda item: "cuda" not in item.nodeid.lower())  # stable: file order otherwise

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.collection_errors.append(report.nodeid)

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.running = nodeid
        self.save(self)

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] = round(self.seconds.get(report.nodeid, 0.0) + report.duration, 2)
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
            self.failures[report.nodeid] = str(report.longrepr)[-1500:]
        elif report.skipped:
            self.outcomes[report.nodeid] = "skipped"
            self.skips[report.nodeid] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")
        if report.when == "teardown":
            self.running = None
            self.save(self)

    def numbers(self) -> dict[str, Any]:
        def count(outcomes) -> dict[str, int]:
            counted = Counter(outcomes)
            return {outcome: counted[outcome] for outcome in ("passed", "failed", "skipped")}

        return {
            "counts": count(self.outcomes.values()),
            "cuda_counts": count(v for k, v in self.outcomes.items() if "cuda" in k.lower()),
            "collection_errors": self.collection_errors,
            "running": self.running,
            "failures": self.failures,
            "skips": self.skips,
            "seconds_by_test": self.seconds,
        }


def run_tests(output: str, dry_run: bool) -> int:
    """Stage 1: pytest on the selection with a Tally; returns pytest's exit code (0 when pytest is missing)."""
    import torch

    from bnext.benchmarking import write_result

    selection = DRY_RUN_TESTS if dry_run else TEST_SELECTION
    pytest, origin = import_pytest()
    head = {
        "selection": " ".join(selection) + " (test ids naming CUDA first)",
        "cuda_available": torch.cuda.is_available(),
        "note": "test_ddp trains two gloo ranks on the CPU (one GPU holds no two NCCL ranks): multi-GPU DDP untested",
    }
    if pytest is None:
        missing = f"pytest missing: not installed, and no copy carried in {CARRIED_SITE} (see gpu_check.sh)"
        write_result(output, {**head, "status": "skipped", "pytest": missing})
        return 0
    head["pytest"] = f"{pytest.__version__} ({origin})"
    tally = Tally(lambda t: write_result(output, {**head, **t.numbers()}))
    args = [*selection, "-p", "no:cacheprovider", "--continue-on-collection-errors", "--color=no", "-q"]
    code = int(pytest.main(args, plugins=[tally]))
    tally.save(tally)
    return code


# ----------------------------------------------------------------------------- stage 3: demo
DRY_RUN_DEMO = ["train.epochs=1", "train.eval_every=1", "train.batch_size=32", "train.bn_recalibration_batches=2"]


def fashion_mnist_dir(work: Path, dry_run: bool) -> tuple[Path | None, str]:
    """(data.data_dir for the demo, what it is): the installed Fashion-MNIST (None: the default place), else a
    generated stand-in of its format and size (toy size in a dry run)."""
    from bnext.data.memory import fashion_mnist
    from bnext.errors import UserError
    from tests.datasets_on_disk import write_fashion_mnist

    if not dry_run:
        try:
            fashion_mnist(None, train=False)
            return None, "Fashion-MNIST (installed)"
        except UserError:
            pass
    train, test = (128, 32) if dry_run else (60000, 10000)
    root = write_fashion_mnist(work / "fashion-mnist", count=train, test_count=test, gz=False)
    return root, f"generated stand-in: {train} + {test} random 28x28 images in IDX files (accuracy is chance level)"


def run_demo(output: str, work: Path, dry_run: bool) -> int:
    """Stage 3: the whole demo (``python -m bnext.demo``) timed from start to exit; its summary's numbers."""
    from bnext.benchmarking import write_result

    started = time.perf_counter()
    data_dir, data = fashion_mnist_dir(work, dry_run)
    result: dict[str, Any] = {"data": data, "data_seconds": round(time.perf_counter() - started, 1)}
    sets = [f"data.data_dir={data_dir}"] if data_dir else []
    student = [*sets, *(DRY_RUN_DEMO if dry_run else [])]
    teacher = [*student, *(["model.kwargs.width_multiplier=0.125"] if dry_run else [])]
    argv = [sys.executable, "-m", "bnext.demo", "--output", str(work / "run")]
    argv += [a for s in student for a in ("--set", s)] + [a for s in teacher for a in ("--teacher-set", s)]
    result["demo_command"] = " ".join(argv)
    write_result(output, result)
    started = time.perf_counter()
    code = subprocess.run(argv).returncode
    result.update(demo_exit_code=code, wall_seconds=time.perf_counter() - started)
    summary_path = work / "run" / "summary.json"
    if code == 0 and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        result.update(
            device=summary["device"],
            student_images_per_s=summary["student"]["images_per_s"],
            student_seconds=summary["student"]["seconds"],
            teacher_seconds=summary["teacher"]["seconds"],
            demo_total_seconds=summary["total_seconds"],
            summary={key: summary[key] for key in ("teacher", "student", "packed")},
        )
    write_result(output, result)
    return code


# ----------------------------------------------------------------------------- record and summary
def gpu_name(payload: dict[str, Any]) -> str | None:
    """The GPU torch saw (from the stage's own record), else nvidia-smi's first GPU, else None."""
    seen = payload.get("machine", {}).get("cuda")
    if seen:
        return seen
    try:
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def record(path: Path, stage: str, code: int, start: float, cap: int, log: Path, command: str) -> None:
    """Complete a stage's JSON (whatever the stage wrote, or nothing) with status, exit code, seconds, GPU, torch.

    ``code``: the exit status under ``timeout`` (124 / 137: cut by the cap); ``start``: seconds since the epoch.
    """
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        payload = {}
    status = "timeout" if code in (124, 137) else "failed" if code else payload.pop("status", "ok")
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    head = {
        "stage": stage,
        "status": status,
        "exit_code": code,
        "seconds": round(time.time() - start, 1),
        "cap_seconds": cap,
        "gpu": gpu_name(payload),
        "torch": payload.get("machine", {}).get("torch", torch_version),
        "command": command,
        "log": str(log),
        "targets": TARGETS.get(stage),
    }
    if status != "ok":
        head["log_tail"] = log.read_text(errors="replace").splitlines()[-40:]
    path.write_text(json.dumps({**head, **{k: v for k, v in payload.items() if k not in head}}, indent=2) + "\n")


def _tests_line(p: dict[str, Any]) -> str:
    if "counts" not in p:
        return p.get("pytest", "no counts")
    c, cuda = p["counts"], p["cuda_counts"]
    line = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
    line += f" (of them naming CUDA: {cuda['passed']} / {cuda['failed']} / {cuda['skipped']})"
    if p["collection_errors"]:
        line += f"; {len(p['collection_errors'])} modules failed to import"
    return line + (f"; cut in {p['running']}" if p.get("running") else "")


def _train_line(p: dict[str, Any]) -> str:
    rows = p.get("rows", {})
    cells = [f"{n} {r['images_per_s']:,.0f}" if "images_per_s" in r else f"{n} error" for n, r in rows.items()]
    return "img/s: " + (", ".join(cells) or "none measured") + " (targets: defaults >= 2,800, defaults_kd >= 1,800)"


def _demo_line(p: dict[str, Any]) -> str:
    if "student_images_per_s" not in p:
        return "demo not finished"
    return (
        f"demo {p['wall_seconds']:.0f} s (target <= 90; teacher {p['teacher_seconds']:.0f} s, student "
        f"{p['student_seconds']:.0f} s), student {p['student_images_per_s']:,.0f} img/s; {p['data'].split(':')[0]}"
    )


def _pipeline_line(p: dict[str, Any]) -> str:
    if "images_per_s" not in p:
        return "nothing measured"
    line = f"gpu pipeline {p['images_per_s']['gpu_pipeline']:,.0f} img/s (target >= 8,000)"
    if "train_data_time_share" in p:
        line += f"; bnext train {p['train_images_per_s']:,.0f} img/s, data share {p['train_data_time_share']:.1%}"
        line += " (target <= 5%)"
    return line


LINES = {"tests": _tests_line, "train": _train_line, "demo": _demo_line, "pipeline": _pipeline_line}


def summary(out: Path, stages: list[str]) -> int:
    """Print one line per stage (and the log tail of any stage not ok); 1 when a stage is not ok."""
    records = {}
    for stage in stages:
        try:
            records[stage] = json.loads((out / f"gpu_check_{stage}.json").read_text())
        except (OSError, ValueError):
            records[stage] = {"status": "no record"}
    first = next(iter(records.values()))
    print(f"\nGPU check summary: GPU {first.get('gpu') or 'none'}, torch {first.get('torch')}; files in {out}")
    for stage, p in records.items():
        numbers = LINES[stage](p) if p["status"] != "no record" else ""
        print(f"  {stage:<9} {p['status']:<8} {p.get('seconds', 0):>5.0f} / {p.get('cap_seconds', 0)} s  {numbers}")
    for stage, p in records.items():
        if p["status"] != "ok":
            print(f"--- {stage}: last lines of {p.get('log')}")
            print("\n".join(p.get("log_tail", [])[-8:]))
    return int(any(p["status"] != "ok" for p in records.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="step", required=True)
    tests = commands.add_parser("tests")
    demo = commands.add_parser("demo")
    demo.add_argument("--work", type=Path, required=True, help="scratch folder (data, run folders)")
    for stage in (tests, demo):
        stage.add_argument("--output", required=True)
        stage.add_argument("--dry-run", action="store_true")
    rec = commands.add_parser("record")
    rec.add_argument("file", type=Path)
    rec.add_argument("--stage", required=True)
    rec.add_argument("--exit-code", type=int, required=True)
    rec.add_argument("--start", type=float, required=True, help="the stage's start, seconds since the epoch")
    rec.add_argument("--cap", type=int, required=True)
    rec.add_argument("--log", type=Path, required=True)
    rec.add_argument("--command", required=True)
    summ = commands.add_parser("summary")
    summ.add_argument("out", type=Path)
    summ.add_argument("stages", nargs="+", choices=list(LINES))
    args = parser.parse_args()
    if args.step == "tests":
        return run_tests(args.output, args.dry_run)
    if args.step == "demo":
        return run_demo(args.output, args.work, args.dry_run)
    if args.step == "record":
        record(args.file, args.stage, args.exit_code, args.start, args.cap, args.log, args.command)
        return 0
    return summary(args.out, args.stages)


if __name__ == "__main__":
    raise SystemExit(main())
