"""``bnext bench``: packed runtime vs PyTorch fp32, per binary layer and end to end."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="bnext_tiny", help="registered model (random weights; speed only)")
    parser.add_argument("--checkpoint", help="time a trained checkpoint instead of --model")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--stem-stride", type=int, default=None, help="stem stride (default: the model's)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (e.g. 1 8)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (e.g. 1 2)")
    parser.add_argument("--reps", type=int, default=20, help="timed calls per measurement (median reported)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from bnext.deploy.bench import format_report, run_benchmark

    if args.checkpoint:
        from bnext.card import card_from_payload
        from bnext.loading import model_from_checkpoint

        model, payload = model_from_checkpoint(args.checkpoint)
        card = card_from_payload(payload)
        name, kwargs = card.model, card.create_kwargs()
    else:
        from bnext.models import create_model

        kwargs = {"num_classes": args.num_classes}
        if args.stem_stride is not None:
            kwargs["stem_stride"] = args.stem_stride
        name, model = args.model, create_model(args.model, **kwargs)
    result = run_benchmark(
        model,
        name,
        kwargs,
        input_size=args.input_size,
        batches=args.batch,
        thread_counts=args.threads,
        reps=args.reps,
        layers=not args.no_layers,
    )
    print(json.dumps(result) if args.json else format_report(result))
    return 0
