"""``bnext landscape``: filter-normalized loss landscapes of checkpoints, pictures and smoothness numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

from bnext.config import add_set_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", nargs="+", required=True, help="one or more bnext checkpoints")
    parser.add_argument("--name", nargs="+", help="a label per checkpoint (default: the checkpoint's folder name)")
    parser.add_argument("--output", required=True, help="folder for NAME.npz grids, PNG plots and smoothness.json")
    parser.add_argument("--steps", type=int, default=21, help="grid points per axis (odd keeps the centre on it)")
    parser.add_argument("--span", type=float, default=1.0, help="the grid covers [-span, span] on both directions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the two random directions")
    parser.add_argument("--batches", type=int, default=4, help="evaluation batches per grid point")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--replot", action="store_true", help="only redraw from the saved grids")
    add_set_argument(parser, "override a data key of the checkpoints' config (e.g. data.data_dir=...)")


def _names(args: argparse.Namespace) -> list[str]:
    from bnext.errors import UserError

    if args.name:
        if len(args.name) != len(args.checkpoint):
            raise UserError(f"--name gives {len(args.name)} labels for {len(args.checkpoint)} checkpoints")
        return list(args.name)
    names = [Path(path).resolve().parent.name or Path(path).stem for path in args.checkpoint]
    if len(set(names)) != len(names):
        names = [f"{index}_{name}" for index, name in enumerate(names)]
    return names


def run(args: argparse.Namespace) -> int:
    from bnext.analysis.landscape import GridSpec
    from bnext.analysis.landscape_report import checkpoint_landscape, draw_report
    from bnext.errors import UserError

    if args.steps < 3:
        raise UserError(f"--steps must be at least 3, got {args.steps}")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    spec = GridSpec(steps=args.steps, span=args.span, seed=args.seed)
    grids = {}
    for name, checkpoint in zip(_names(args), args.checkpoint, strict=True):
        grids[name] = output / f"{name}.npz"
        if not args.replot:
            checkpoint_landscape(
                checkpoint,
                grids[name],
                spec,
                batches=args.batches,
                batch_size=args.batch_size,
                overrides=args.overrides,
            )
    report = draw_report(grids, output)
    for name, numbers in report.items():
        print(
            f"{name:24s} centre loss {numbers['centre_loss']:.4f}  non-convex share {numbers['nonconvex_share']:.3f}  "
            f"curvature (mean |Laplacian|) {numbers['mean_abs_laplacian']:.4g}"
        )
    print(f"plots and smoothness.json in {output}")
    return 0
