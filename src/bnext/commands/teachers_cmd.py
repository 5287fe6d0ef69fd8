"""``bnext teachers rank``: rank candidate teachers by Knowledge Complexity (paper Eq. 3, Table 8)."""

from __future__ import annotations

import argparse
import json

from torch import nn

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


class _Adapted(nn.Module):
    """A teacher that takes the student's normalized batch (for measuring its accuracy)."""

    def __init__(self, teacher, mean, std) -> None:
        super().__init__()
        self.teacher, self.mean, self.std = teacher, mean, std
        self.inner = teacher.model

    def forward(self, x):
        return self.inner(self.teacher.adapt(x, self.mean, self.std))


def _params_without_weights(spec: str) -> int | None:
    """Parameter count of an architecture, built without downloading weights."""
    import timm
    import torchvision

    name = spec.rpartition(":")[2]
    if name in torchvision.models.list_models():
        return sum(p.numel() for p in torchvision.models.get_model(name, weights=None).parameters())
    if timm.list_models(name):
        return sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    return None


def _measure(spec: str, args: argparse.Namespace) -> tuple[int, float]:
    import copy

    from bnext.config import DEFAULTS
    from bnext.data import build_data
    from bnext.distill import load_teacher
    from bnext.train import evaluate

    teacher = load_teacher(spec)
    config = copy.deepcopy(DEFAULTS)
    config["data"].update(dataset=args.dataset, data_dir=args.data_dir, augment="none")
    config["train"]["batch_size"] = args.batch_size
    data = build_data(config)
    result = evaluate(_Adapted(teacher, data.mean, data.std), data.val, progress=True)
    return teacher.params, result["top1"] / 100


def rank_rows(args: argparse.Namespace) -> list[tuple[str, int, float, float]]:
    from bnext.distill import KNOWN_TEACHERS, rank_by_kc

    given = {}
    for text in args.accuracy:
        name, _, value = text.partition("=")
        try:
            given[name] = float(value)
        except ValueError as error:
            raise UserError(f"--accuracy takes NAME=FRACTION (e.g. resnet34=0.7331), got {text!r}") from error
    candidates = {}
    for spec in args.candidates:
        name = spec.rpartition(":")[2]
        if name in given or (name in KNOWN_TEACHERS and not args.dataset):
            params = KNOWN_TEACHERS[name].params if name in KNOWN_TEACHERS else _params_without_weights(spec)
            accuracy = given.get(name, KNOWN_TEACHERS[name].accuracy if name in KNOWN_TEACHERS else None)
            if params is None:
                raise UserError(f"cannot count the parameters of {spec!r}: not a torchvision or timm model")
            candidates[name] = (params, accuracy)
        elif args.dataset:
            candidates[name] = _measure(spec, args)
        else:
            raise UserError(f"no accuracy for {spec!r}: pass --accuracy {name}=FRACTION or --dataset to measure it")
    return rank_by_kc(candidates)


def run(args: argparse.Namespace) -> int:
    rows = rank_rows(args)
    if args.json:
        print(json.dumps([{"teacher": n, "params": p, "accuracy": a, "kc": kc} for n, p, a, kc in rows]))
        return 0
    print(f"{'teacher':<22} {'params':>12} {'top-1':>7} {'KC':>7}")
    for name, params, accuracy, kc in rows:
        print(f"{name:<22} {params:>12,} {100 * accuracy:>6.2f}% {kc:>7.3f}")
    return 0
