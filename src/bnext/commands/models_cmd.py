"""``bnext models``: the registered model names (what ``bnext profile``, ``train`` and ``create_model`` accept)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'bnext*'")


def run(args: argparse.Namespace) -> int:
    from bnext.models import list_models

    names = list_models(args.pattern)
    print("\n".join(names) if names else f"no registered model matches {args.pattern!r}")
    return 0
