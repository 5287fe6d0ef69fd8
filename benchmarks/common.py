"""Shared by the benchmark scripts: results go to benchmarks/results/NAME.json (a ``--quick`` smoke run's to
runs/bench_quick/NAME.json, so that it never replaces a measured result)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from bnext.benchmarking import write_result as _write
from bnext.config import load_config
from bnext.data import build_data
from bnext.deploy.runtime import REFERENCE, resolved_path
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = Path(__file__).resolve().parents[1] / "runs" / "bench_quick"
BLOCK = 5  # calls in a row per runtime turn (the first untimed): no runtime pays for another's thread pool


def write_result(name: str, results: dict[str, Any], quick: bool = False) -> Path:
    """Write ``results/NAME.json`` (``QUICK_RESULTS/NAME.json`` for a smoke run) with the command line, machine
    and UTC date."""
    return _write((QUICK_RESULTS if quick else RESULTS) / f"{name}.json", results)


def add_quick_flag(parser: argparse.ArgumentParser) -> None:
    """``--quick``: a smoke test of a script's plumbing at toy sizes and reps (its numbers mean nothing)."""
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke test: toy sizes and reps, written to {QUICK_RESULTS}"
    )


def native_kernel_path() -> str:
    """The kernel path the C++ runtime selects on this CPU; exits with the install command when it is missing
    (the torch reference that ``bnext.deploy`` falls back to is no runtime to time)."""
    path = resolved_path(None)
    if path == REFERENCE:
        raise SystemExit("the C++ runtime (bnext_runtime) is not installed: pip install ./runtime")
    return path


def finished_run(folder: Path) -> tuple[torch.nn.Module, dict] | None:
    """(model, {"val_top1": test top-1 measured now}) of a completed training run in ``folder``, else None."""
    try:
        model, payload = model_from_checkpoint(folder / "last.pt")
    except UserError:
        return None
    if payload["epoch"] != payload["config"]["train"]["epochs"]:
        return None
    data = build_data(load_config(None, base=payload["config"]))
    return model, {"val_top1": evaluate(model, data.val)["top1"]}
