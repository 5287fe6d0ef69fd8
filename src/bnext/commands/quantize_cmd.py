"""``bnext quantize``: post-training quantization of a checkpoint's fp layers (paper 7.5, Table 7)."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from bnext.config import add_set_argument

TABLE7_CONFIGS = ("32/32", "8/8-8/8-8/8-8/8", "8/8-4/8-4/8-8/8", "8/8-4/8-4/4-8/8", "8/8-4/4-4/4-8/8")


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


def quantize_and_evaluate(model, data, config: str, args: argparse.Namespace):
    """Quantize a copy of ``model`` per ``config``, calibrate (and fine-tune) it; return (model, top-1, top-5)."""
    from bnext.quant import calibrate, finetune_quantized, quantize_model
    from bnext.train import evaluate

    model = copy.deepcopy(model)
    if config != "32/32":
        quantize_model(model, config)
        batches = args.calibration_batches
        calibrate(model, (x for _, (x, _, _) in zip(range(batches), data.train.epoch(0), strict=False)))
        if args.finetune_epochs:
            finetune_quantized(model, data.train, args.finetune_epochs, args.finetune_lr)
    result = evaluate(model, data.val)
    return model, result["top1"], result["top5"]


def run(args: argparse.Namespace) -> int:
    from bnext.card import card_from_payload
    from bnext.checkpoint import save_checkpoint
    from bnext.config import load_config
    from bnext.data import build_data
    from bnext.loading import model_from_checkpoint
    from bnext.quant import parse_quant_config

    model, payload = model_from_checkpoint(args.checkpoint)
    config = load_config(None, ["data.augment=none", "data.subset=null", *args.overrides], base=payload.get("config"))
    data = build_data(config)
    configs = TABLE7_CONFIGS if args.sweep else (args.config,)
    for text in configs:
        if text != "32/32":
            parse_quant_config(text)  # fail on a malformed config before any work
    rows = []
    for text in configs:
        quantized, top1, top5 = quantize_and_evaluate(model, data, text, args)
        rows.append({"config": text, "top1": top1, "top5": top5})
        if args.output and not args.sweep:
            path = Path(args.output) / "quantized.pt"
            extra = {k: payload[k] for k in ("config",) if k in payload}
            save_checkpoint(
                quantized,
                path,
                card=card_from_payload(payload),
                quant_config=text,
                kind="quantized",
                best_top1=top1,
                **extra,
            )
            rows[-1]["checkpoint"] = str(path)
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'I-S-E-O (W/A)':<20} {'top-1':>7} {'top-5':>7}")
        for row in rows:
            print(f"{row['config']:<20} {row['top1']:>6.2f}% {row['top5']:>6.2f}%")
        if "checkpoint" in rows[-1]:
            print(f"checkpoint: {rows[-1]['checkpoint']}")
    return 0
