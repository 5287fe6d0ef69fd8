"""Shared by the benchmark scripts: results go to benchmarks/results/NAME.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnext.benchmarking import write_result as _write

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, results: dict[str, Any]) -> Path:
    """Write ``results/NAME.json`` with the command line, machine and UTC date."""
    return _write(RESULTS / f"{name}.json", results)
