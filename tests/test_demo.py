"""The demo on a tiny synthetic task: phases, summary under the run folder, tracked files untouched."""

import json
from pathlib import Path

import pytest

from bnext import demo

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.dataset=synthetic",
    "data.synthetic_size=96",
    "data.synthetic_classes=4",
    "train.epochs=2",
    "train.eval_every=2",
    "train.batch_size=32",
    "train.bn_recalibration_batches=2",
]


@pytest.mark.slow
def test_demo_writes_its_summary_under_the_run_folder_only(tmp_path, capsys):
    recorded = REPO / "benchmarks" / "results" / "demo_fashion_mnist.json"
    before = recorded.read_bytes() if recorded.exists() else None
    teacher = [*TINY, "model.kwargs.width_multiplier=0.125"]
    argv = ["--output", str(tmp_path / "demo")]
    argv += [arg for item in TINY for arg in ("--set", item)]
    argv += [arg for item in teacher for arg in ("--teacher-set", item)]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    for phase in ("[1/4] fp teacher", "[2/4] BNext student", "[3/4] export", "[4/4] results"):
        assert phase in out
    assert "bnext demo on CPU" in out and "epoch 2/2  train loss" in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["student"]["epochs"] == 2 and summary["packed"]["test_top1"] == summary["student"]["test_top1"]
    assert summary["machine"]["isa"].keys() >= {"avx2", "avx512f", "avx512_vpopcntdq", "avx512_bf16", "amx_tile"}
    assert (recorded.read_bytes() if recorded.exists() else None) == before  # the tracked result is untouched

    # A second run reuses the finished teacher; --record writes the result file where asked.
    record = tmp_path / "recorded.json"
    assert demo.main([*argv, "--record", str(record)]) == 0
    assert "teacher: reusing" in capsys.readouterr().out
    assert json.loads(record.read_text())["teacher"]["reused"] is True
