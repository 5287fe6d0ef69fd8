"""``bnext quantize``: post-training quantization of a checkpoint's fp layers (paper 7.5, Table 7)."""

from __future__ import annotations

import argparse
import json

from bnext.config import add_set_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a trained bnext checkpoint")
    parser.add_argument("--config", default="8/8-4/8-4/8-8/8", help="I-S-E-O W/A bits (default 8/8-4/8-4/8-8/8)")
    parser.add_argument("--sweep", action="store_true", help="evaluate the five configurations of paper Table 7")
    parser.add_argument("--calibration-batches", type=int, default=8, help="training batches for the ranges")
    parser.add_argument(
        "--finetune-epochs", type=int, default=0, help="fine-tune with AdamW lr 1e-7, binary layers frozen (paper: 5)"
    )
    parser.add_argument("--finetune-lr", type=float, default=1e-7)
    parser.add_argument("--output", help="folder for the quantized checkpoint (quantized.pt)")
    add_set_argument(parser, "data overrides, e.g. --set data.data_dir=...")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def run(args: argparse.Namespace) -> int:
    from bnext.workflows import TABLE7_CONFIGS, quantize_checkpoint

    rows = quantize_checkpoint(
        args.checkpoint,
        TABLE7_CONFIGS if args.sweep else (args.config,),
        calibration_batches=args.calibration_batches,
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        output=None if args.sweep else args.output,
        overrides=args.overrides,
    )
    if args.json:
        print(json.dumps([{k: v for k, v in row.items() if k != "model"} for row in rows]))
    else:
        print(f"{'I-S-E-O (W/A)':<20} {'top-1':>7} {'top-5':>7}")
        for row in rows:
            print(f"{row['config']:<20} {row['top1']:>6.2f}% {row['top5']:>6.2f}%")
        if "checkpoint" in rows[-1]:
            print(f"checkpoint: {rows[-1]['checkpoint']}")
    return 0
