"""``bnext eval``: top-1 / top-5 of a checkpoint on a dataset's validation split."""

from __future__ import annotations

import argparse
import json

from bnext.config import add_set_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a bnext checkpoint (best.pt, last.pt, quantized)")
    parser.add_argument("--dataset", help="dataset kind (default: the one the checkpoint was trained on)")
    parser.add_argument("--data-dir", help="dataset root (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=256)
    add_set_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from bnext.workflows import evaluate_checkpoint

    flags = {"data.dataset": args.dataset, "data.data_dir": args.data_dir, "train.batch_size": args.batch_size}
    overrides = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    result = evaluate_checkpoint(args.checkpoint, [*overrides, *args.overrides])
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}  "
            f"({result['count']} images, {result['skipped']} unreadable skipped)"
        )
    return 0
