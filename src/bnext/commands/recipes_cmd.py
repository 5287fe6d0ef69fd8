"""``bnext recipes``: the YAML recipes shipped with the package (``bnext train --config NAME`` takes them)."""

from __future__ import annotations

import argparse

from bnext.config import RECIPES, list_recipes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", action="store_true", help="print each recipe's file path too")


def run(args: argparse.Namespace) -> int:
    for name in list_recipes():
        print(f"{name:<28} {RECIPES / name}.yaml" if args.path else name)
    return 0
