"""Shared by the benchmark scripts: results go to benchmarks/results/NAME.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bnext.benchmarking import write_result as _write
from bnext.config import load_config
from bnext.data import build_data
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.train import evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, results: dict[str, Any]) -> Path:
    """Write ``results/NAME.json`` with the command line, machine and UTC date."""
    return _write(RESULTS / f"{name}.json", results)


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
