"""The ``bnext`` command line tool: one program, one subcommand per task."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from bnext import __version__
from bnext.commands import (
    bench_cmd,
    doctor_cmd,
    eval_cmd,
    export_cmd,
    landscape_cmd,
    models_cmd,
    profile_cmd,
    quantize_cmd,
    recipes_cmd,
    teachers_cmd,
    train_cmd,
)
from bnext.errors import UserError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "models": ("list the registered models", models_cmd.add_arguments, models_cmd.run),
    "recipes": ("list the shipped YAML recipes", recipes_cmd.add_arguments, recipes_cmd.run),
    "train": ("train a model from a YAML recipe", train_cmd.add_arguments, train_cmd.run),
    "eval": ("evaluate a checkpoint: top-1 / top-5", eval_cmd.add_arguments, eval_cmd.run),
    "profile": ("per-layer parameters, size, BOPs, FLOPs, OPs", profile_cmd.add_arguments, profile_cmd.run),
    "quantize": ("post-training quantization of the fp layers", quantize_cmd.add_arguments, quantize_cmd.run),
    "teachers": ("rank teachers by Knowledge Complexity", teachers_cmd.add_arguments, teachers_cmd.run),
    "export": ("pack a checkpoint into a 1-bit .bnx model", export_cmd.add_arguments, export_cmd.run),
    "bench": ("packed runtime vs PyTorch fp32 speed", bench_cmd.add_arguments, bench_cmd.run),
    "landscape": ("loss-landscape plots and smoothness numbers", landscape_cmd.add_arguments, landscape_cmd.run),
    "doctor": (
        "versions, CPU, kernel path, runtime, GPUs, datasets: for bug reports",
        doctor_cmd.add_arguments,
        doctor_cmd.run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnext", description="Accurate and fast binary neural networks.")
    parser.add_argument("--version", action="version", version=f"bnext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        command = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        print(f"bnext {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bnext {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
