"""benchmarks/gpu_check.sh --dry-run: every stage of the GPU check runs its plumbing on the CPU at toy sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_KEYS = {  # what each stage's JSON must hold besides the record's own keys
    "tests": {"pytest", "counts", "cuda_counts", "failures", "selection"},
    "train": {"rows", "image_size", "batch_size"},
    "demo": {"data", "wall_seconds", "student_images_per_s", "teacher_seconds", "summary"},
    "pipeline": {"images_per_s", "train_images_per_s", "train_data_time_share", "folder"},
}
RECORD_KEYS = {"stage", "status", "exit_code", "seconds", "cap_seconds", "gpu", "torch", "command", "targets"}


def test_dry_run_writes_every_stage_ok_and_a_summary(tmp_path):
    results = REPO / "benchmarks" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for stage, keys in STAGE_KEYS.items():
        record = json.loads((tmp_path / "out" / f"gpu_check_{stage}.json").read_text())
        assert record["status"] == "ok" and record["exit_code"] == 0, (stage, record.get("log_tail"))
        assert RECORD_KEYS | keys <= record.keys(), stage
        assert f"  {stage} " in done.stdout
    tests = json.loads((tmp_path / "out" / "gpu_check_tests.json").read_text())
    assert tests["counts"]["passed"] > 0 and tests["counts"]["failed"] == 0
    train = json.loads((tmp_path / "out" / "gpu_check_train.json").read_text())
    assert list(train["rows"]) == ["defaults", "defaults_kd", "fp32", "fp32_kd"]
    assert all(row["images_per_s"] > 0 for row in train["rows"].values())
    assert "GPU check summary" in done.stdout
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before  # tracked results untouched


def test_records_of_a_cut_a_failed_and_a_skipped_stage_and_their_summary(tmp_path, capsys):
    """The paths a dry run does not take: a stage cut by its cap keeps its numbers, a stage that died leaves
    its log's tail, a missing pytest is a skipped stage; the summary shows them and says not ok."""
    from benchmarks.gpu_check import record, summary

    def write(stage, payload, log):
        if payload is not None:
            (tmp_path / f"gpu_check_{stage}.json").write_text(json.dumps(payload))
        (tmp_path / f"gpu_check_{stage}.log").write_text(log)

    machine = {"machine": {"cuda": "NVIDIA H200", "torch": "2.11.0"}}
    write("tests", {**machine, "status": "skipped", "pytest": "pytest missing: carry it"}, "")
    write("train", {**machine, "rows": {"defaults": {"images_per_s": 3012.5}}}, "epoch 1/2\n")
    write("demo", None, "Traceback (most recent call last):\nRuntimeError: boom\n")
    records = {}
    for stage, code in (("tests", 0), ("train", 124), ("demo", 1)):
        path = tmp_path / f"gpu_check_{stage}.json"
        record(path, stage, code, 0.0, 60, tmp_path / f"gpu_check_{stage}.log", f"timeout 60 {stage}")
        records[stage] = json.loads(path.read_text())
    tests, train, demo = records.values()
    assert (tests["status"], train["status"], demo["status"]) == ("skipped", "timeout", "failed")
    assert train["rows"]["defaults"]["images_per_s"] == 3012.5 and train["gpu"] == "NVIDIA H200"
    assert train["torch"] == "2.11.0" and train["targets"]["defaults_images_per_s_min"] == 2800
    assert demo["log_tail"][-1] == "RuntimeError: boom" and demo["command"] == "timeout 60 demo"
    assert summary(tmp_path, ["tests", "train", "demo", "pipeline"]) == 1
    out = capsys.readouterr().out
    assert "pytest missing" in out and "defaults 3,012" in out and "RuntimeError: boom" in out
    assert "pipeline  no record" in out
