"""``bnext export``: a checkpoint as a packed 1-bit ``.bnx`` model, with its size next to the fp32 one."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a bnext checkpoint (trained or quantized with `bnext quantize`)")
    parser.add_argument("--output", required=True, help="the .bnx file to write")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from bnext.deploy import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.output)
    if args.json:
        print(json.dumps({**asdict(report), "path": str(report.path)}))
        return 0
    print(
        f"wrote {report.path}: {report.bytes / MIB:.2f} MiB ({report.binary_layers} binary layers, "
        f"{report.binary_weights:,} weights at 1 bit)\n"
        f"  {report.fp32_weights_bytes / report.bytes:.1f}x smaller than the model's fp32 weights "
        f"({report.fp32_weights_bytes / MIB:.2f} MiB)\n"
        f"  {report.checkpoint_bytes / report.bytes:.1f}x smaller than {args.checkpoint} "
        f"({report.checkpoint_bytes / MIB:.2f} MiB; a training checkpoint also holds optimizer state)"
    )
    return 0
