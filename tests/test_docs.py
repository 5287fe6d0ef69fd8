"""The README and docs: generated pages equal what the result files say, the README stays short, links resolve."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from benchmarks.report import (
    NOT_MEASURED,
    SECTIONS,
    expected_pages,
    headline,
    load_results,
    main,
    results_page,
    stale,
)
from bnext import create_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a markdown page's headings (lower case, punctuation dropped, spaces as hyphens)."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_committed_pages_match_the_result_files():
    changed = stale(expected_pages())
    assert not changed, f"{[str(p) for p in changed]} differ from benchmarks/results/: run python benchmarks/report.py"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; details belong in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path_text, _, anchor = target.partition("#")
        path = (page.parent / path_text).resolve() if path_text else page
        assert path.exists(), f"{page.name}: link to {target} points nowhere"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: no heading #{anchor} in {path.name}"


def test_readme_model_table_matches_the_registry():
    rows = re.findall(r"^\| `(\w+)` \| ([\d,]+) \|", (REPO / "README.md").read_text(), re.M)
    assert len(rows) == 10
    with torch.device("meta"):  # parameter counts without allocating bnext_large's weights
        for name, params in rows:
            assert sum(p.numel() for p in create_model(name).parameters()) == int(params.replace(",", "")), name


def peer_file_renamed(folder: Path) -> dict:
    """The committed AVX2 peer file with its bnext rows under the runtime's new name, written to ``folder``."""
    data = json.loads((RESULTS / "peer_inference_avx2.json").read_text())
    for key in ("end_to_end_ms", "end_to_end_ms_batch8"):
        data[key] = {("bnext_runtime" if k == "bnext_packed" else k): v for k, v in data[key].items()}
    (folder / "peer_inference_avx2.json").write_text(json.dumps(data))
    return data


def test_no_result_file_says_not_measured_yet(tmp_path):
    page = results_page(load_results(tmp_path))
    for section in SECTIONS[:-1]:  # every kind but "other files"
        assert f"## {section.title}\n\nNot measured yet" in page
    assert headline([]).count(NOT_MEASURED) == 3  # the demo, the peers, the GPU


def test_estimates_are_shown_as_estimates_and_new_layouts_as_recorded(tmp_path):
    estimate = {"command": "llvm-mca ...", "date": "2026-12-01T00:00:00+00:00", "estimate": True}
    estimate["end_to_end_ms"] = {"bnext_runtime": {"1": 40.0}}
    (tmp_path / "arm_estimate.json").write_text(json.dumps(estimate))
    runtime = {"machine": {"cpu": "Some CPU", "isa": {"avx2": True}}, "wheel_mib": 1.25, "rows": [{"a": 1, "b": 2.5}]}
    (tmp_path / "runtime_avx2.json").write_text(json.dumps(runtime))
    results = load_results(tmp_path)
    page = results_page(results)
    estimates = page.split("## Estimates")[1].split("\n## ")[0]
    assert "arm_estimate" in estimates and "Estimate, not a measurement" in estimates
    assert "arm_estimate" not in page.split("## Estimates")[0]
    runtime_part = page.split("## The C++ runtime")[1].split("\n## ")[0]
    assert "| `wheel_mib` | 1.25 |" in runtime_part and "Some CPU" in runtime_part and "ISA avx2" in runtime_part
    top = headline(results)
    assert "Estimates, not measurements" in top and "40.0" not in top


def test_renamed_bnext_runtime_rows_and_gpu_records(tmp_path):
    data = peer_file_renamed(tmp_path)
    for stage, status in (("train", "ok"), ("tests", "failed")):  # a record as gpu_check.sh completes it
        record = {"stage": stage, "status": status, "gpu": "NVIDIA H200", "torch": "2.14.1", "rows": {}}
        (tmp_path / f"gpu_check_{stage}.json").write_text(json.dumps(record))
    results = load_results(tmp_path)
    top = headline(results)
    assert f"**1t {data['end_to_end_ms']['bnext_runtime']['1']:.1f}" in top
    assert "**GPU**: NVIDIA H200, torch 2.14.1" in top and "tests failed · train ok" in top  # the script's order
    page = results_page(results)
    assert "bnext runtime, batch 1 (ms)" in page and "bnext packed" not in page


def test_a_layout_the_script_does_not_know_is_shown_as_recorded(tmp_path, capsys):
    shutil.copy(RESULTS / "deploy_bench_avx2.json", tmp_path)
    (tmp_path / "deploy_bench_neon.json").write_text(json.dumps({"speedup": 9.5}))
    page = results_page(load_results(tmp_path))
    assert "| packed runtime against PyTorch fp32 eval | `deploy_bench_avx2` |" in page  # the known one, as a table
    assert "### As recorded: `deploy_bench_neon`" in page and "| `speedup` | 9.5 |" in page
    assert "deploy_bench_neon: layout not known" in capsys.readouterr().err


def test_check_exits_1_on_a_changed_number_until_the_pages_are_rewritten(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    for page in PAGES:
        shutil.copy(page, tmp_path / page.relative_to(REPO))
    shutil.copytree(RESULTS, tmp_path / "benchmarks" / "results")
    assert main(["--check", "--root", str(tmp_path)]) == 0
    demo = tmp_path / "benchmarks" / "results" / "demo_fashion_mnist_avx2.json"
    demo.write_text(demo.read_text().replace('"test_top1": 88.18', '"test_top1": 88.19'))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "+| **88.19%**" in capsys.readouterr().out
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert "**88.19%**" in (tmp_path / "README.md").read_text()
