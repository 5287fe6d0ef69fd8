"""Loss landscapes of eight ResNet-18-layout networks trained at equal budget (paper Fig. 1b / 2 / 6 analog).

A full-precision ResNet-18, BinaryNet-18, Bi-Real-18, Real2Binary-18, and BNext-18
with neither module, Info-RCP only, ELM-Attention only and both, each trained with
the same recipe (the fashion_mnist/default recipe without KD: half width, ImageNet
stem, --epochs on Fashion-MNIST), then a filter-normalized landscape of each on the
first test images. Finished runs and grids in the output folder are reused, so an
interrupted run continues. Writes results/landscape.json (test accuracy, training
time and smoothness per model) and results/landscape/ (grids, panel, plots).

    python benchmarks/landscape_comparison.py [--output runs/landscape] [--epochs 2] [--steps 21]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from bnext.analysis.landscape import GridSpec
from bnext.analysis.landscape_report import checkpoint_landscape, draw_report
from bnext.config import RECIPES, load_config
from bnext.train import Trainer

try:
    from benchmarks.common import RESULTS, finished_run, write_result
except ImportError:
    from common import RESULTS, finished_run, write_result

RECIPE = RECIPES / "fashion_mnist" / "default.yaml"
SHAPE = {"stem_stride": 2, "width_multiplier": 0.5}
MODELS = {
    "resnet18_fp": ("resnet18_fp", {}, "ResNet-18 (fp32)"),
    "binarynet18": ("binarynet18", {}, "BinaryNet-18"),
    "birealnet18": ("birealnet18", {}, "Bi-Real-18"),
    "real2binary18": ("real2binary18", {}, "Real2Binary-18"),
    "bnext18_plain": ("bnext18", {"elm_attention": False, "recoupling": False}, "BNext-18 w/o both modules"),
    "bnext18_rcp": ("bnext18", {"elm_attention": False}, "BNext-18 Info-RCP only"),
    "bnext18_elm": ("bnext18", {"recoupling": False}, "BNext-18 ELM-Attention only"),
    "bnext18": ("bnext18", {}, "BNext-18 (both)"),
}


def train_or_reuse(folder: Path, model: str, kwargs: dict, epochs: int) -> dict:
    """Train one model with the shared recipe unless a finished run is in ``folder``."""
    reused = finished_run(folder)
    if reused is not None:
        return {"test_top1": reused[1]["val_top1"], "seconds": None}
    overrides = [
        f"output={folder}",
        "distill.mode=none",
        f"train.epochs={epochs}",
        f"model.name={model}",
        f"model.kwargs={json.dumps({**SHAPE, **kwargs})}",
    ]
    start = time.perf_counter()
    record = Trainer(load_config(RECIPE, overrides)).fit()
    return {"test_top1": record["val_top1"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/landscape")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--span", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=2, help="test batches of 256 per grid point")
    args = parser.parse_args()
    out = Path(args.output)
    figures = RESULTS / "landscape"
    figures.mkdir(parents=True, exist_ok=True)
    spec = GridSpec(steps=args.steps, span=args.span)
    runs, grids = {}, {}
    for name, (model, kwargs, _) in MODELS.items():
        runs[name] = {
            "model": model,
            "kwargs": {**SHAPE, **kwargs},
            **train_or_reuse(out / name, model, kwargs, args.epochs),
        }
        print(name, runs[name], flush=True)
    for name in MODELS:
        grids[name] = out / f"{name}.npz"
        start = time.perf_counter()
        checkpoint_landscape(out / name / "last.pt", grids[name], spec, batches=args.batches, batch_size=256)
        runs[name]["landscape_seconds"] = time.perf_counter() - start
        shutil.copy(grids[name], figures / f"{name}.npz")
    report = draw_report({n: figures / f"{n}.npz" for n in MODELS}, figures, {n: c for n, (_, _, c) in MODELS.items()})
    for name in MODELS:
        runs[name].update(report[name])
    path = write_result(
        "landscape",
        {
            "recipe": "fashion_mnist/default",
            "epochs": args.epochs,
            "grid": asdict(spec),
            "models": runs,
        },
    )
    print("wrote", path)


if __name__ == "__main__":
    main()
