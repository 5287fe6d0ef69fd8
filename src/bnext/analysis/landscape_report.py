"""Landscapes of trained checkpoints: grids, per-model pictures, a shared-scale panel and smoothness numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bnext.analysis.landscape import GridSpec, compute_landscape, fixed_batches, load_grid, smoothness
from bnext.analysis.landscape_plots import plot_contour, plot_panel, plot_surface
from bnext.config import load_config
from bnext.data import build_data
from bnext.loading import model_from_checkpoint


def checkpoint_landscape(
    checkpoint: str | Path,
    grid_path: Path,
    spec: GridSpec,
    *,
    batches: int,
    batch_size: int,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute (or finish) the loss grid of a bnext checkpoint on the first ``batches`` of its validation split."""
    model, payload = model_from_checkpoint(checkpoint)
    config = load_config(
        None, ["data.subset=null", f"train.batch_size={batch_size}", *(overrides or [])], base=payload.get("config")
    )
    data = build_data(config)
    meta = {"checkpoint_sha256": payload["model_sha256"], "dataset": config["data"]["dataset"]}
    return compute_landscape(model, fixed_batches(data.val, batches), grid_path, spec, meta=meta, progress=progress)


def draw_report(grid_paths: Mapping[str, Path], output: Path, captions: Mapping[str, str] | None = None) -> dict:
    """Contour + surface PNG per grid, a panel when there are several, and ``smoothness.json``."""
    captions = dict(captions or {})
    grids = {name: load_grid(path) for name, path in grid_paths.items()}
    report: dict[str, Any] = {}
    for name, grid in grids.items():
        if np.isnan(grid["loss"]).any():
            raise ValueError(f"the landscape of {name} is unfinished; compute it first")
        title = captions.get(name, name)
        plot_contour(grid["coordinates"], grid["loss"], output / f"{name}_contour.png", title)
        plot_surface(grid["coordinates"], grid["loss"], output / f"{name}_surface.png", title)
        centre = grid["loss"].shape[0] // 2
        report[name] = {
            **smoothness(grid["loss"], grid["coordinates"]),
            "centre_top1_on_grid_images": float(grid["accuracy"][centre, centre]),
            "grid": grid["meta"]["grid"],
            "images": grid["meta"]["images"],
        }
    if len(grids) > 1:
        coordinates = next(iter(grids.values()))["coordinates"]
        panel_captions = {
            name: f"{captions.get(name, name)}\nnon-convex {report[name]['nonconvex_share']:.2f}, "
            f"curvature {report[name]['mean_abs_laplacian']:.3g}"
            for name in grids
        }
        plot_panel(coordinates, {n: g["loss"] for n, g in grids.items()}, output / "panel.png", panel_captions)
    (output / "smoothness.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
