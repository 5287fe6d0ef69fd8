"""``bnext teachers rank``: rank candidate teachers by Knowledge Complexity (paper Eq. 3, Table 8)."""

from __future__ import annotations

import argparse
import json

from bnext.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    rank = sub.add_parser("rank", help="table of teachers sorted by KC (lowest first)")
    rank.add_argument(
        "--candidates",
        nargs="+",
        required=True,
        help="teacher specs: torchvision/timm names, efficientnet_lite0, checkpoint paths",
    )
    rank.add_argument(
        "--accuracy",
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help="top-1 of a candidate as a fraction (e.g. resnet34=0.7331); overrides the known table",
    )
    rank.add_argument("--dataset", help="measure accuracy on this dataset's validation split when not given")
    rank.add_argument("--data-dir", help="dataset root for --dataset")
    rank.add_argument("--batch-size", type=int, default=64)
    rank.add_argument("--json", action="store_true")


def rank_rows(args: argparse.Namespace) -> list[tuple[str, int, float, float]]:
    from bnext.workflows import rank_teachers

    given = {}
    for text in args.accuracy:
        name, _, value = text.partition("=")
        try:
            given[name] = float(value)
        except ValueError as error:
            raise UserError(f"--accuracy takes NAME=FRACTION (e.g. resnet34=0.7331), got {text!r}") from error
    return rank_teachers(
        args.candidates, given, dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size
    )


def run(args: argparse.Namespace) -> int:
    rows = rank_rows(args)
    if args.json:
        print(json.dumps([{"teacher": n, "params": p, "accuracy": a, "kc": kc} for n, p, a, kc in rows]))
        return 0
    print(f"{'teacher':<22} {'params':>12} {'top-1':>7} {'KC':>7}")
    for name, params, accuracy, kc in rows:
        print(f"{name:<22} {params:>12,} {100 * accuracy:>6.2f}% {kc:>7.3f}")
    return 0
