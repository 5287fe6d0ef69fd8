"""``bnext profile``: the cost table of a model (paper Table 2 accounting)."""

from __future__ import annotations

import argparse
import json

from bnext.analysis.profile import ModelCost, profile_model
from bnext.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name (see `bnext models`) or a checkpoint path")
    parser.add_argument("--input-size", type=int, default=224, help="square input resolution (default 224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier width (default 1000)")
    parser.add_argument("--stem-stride", type=int, default=None, help="stem stride (default: the model's)")
    parser.add_argument("--quant", metavar="CONFIG", help="count with PTQ applied, e.g. 8/8-4/8-4/8-8/8 (I-S-E-O)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--layers", action="store_true", help="with --json: include the per-layer rows")


def format_table(cost: ModelCost) -> str:
    rows = [f"{'layer':<42} {'kind':<6} {'shape':<22} {'params':>10} {'MACs':>14}"]
    rows += [
        f"{layer.name:<42} {layer.kind:<6} {layer.shape:<22} {layer.params:>10,} {layer.macs:>14,}"
        for layer in cost.layers
    ]
    rows += [
        "",
        f"params fp        {cost.params_fp:>16,}",
        f"params binary    {cost.params_binary:>16,}",
        f"size             {cost.size_mib:>16.2f} MiB (binary 1 bit, quantized at their bits, rest 32 bit)",
        f"BOPs             {cost.bops:>16.4e}",
        f"FLOPs            {cost.flops:>16.4e}",
        f"QOPs             {cost.qops:>16.4e}",
        f"OPs              {cost.ops:>16.4e}  (BOPs/64 + FLOPs)",
        f"binarization     {cost.binarization_degree:>16.3f}  (BOPs/64 / OPs)",
    ]
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from bnext.loading import model_from_checkpoint
    from bnext.models import create_model, is_model

    if is_model(args.model):
        kwargs = {} if args.stem_stride is None else {"stem_stride": args.stem_stride}
        model = create_model(args.model, num_classes=args.num_classes, **kwargs)
    elif args.model.endswith((".pt", ".pth", ".tar")):
        model, _ = model_from_checkpoint(args.model)
    else:
        create_model(args.model)  # raises the unknown-name error with suggestions
        raise UserError(f"cannot profile {args.model!r}")
    if args.quant:
        from bnext.quant import quantize_model

        quantize_model(model, args.quant)
    cost = profile_model(model, args.input_size)
    if args.json:
        print(json.dumps(cost.as_dict(with_layers=args.layers), indent=2))
    else:
        print(format_table(cost))
    return 0
