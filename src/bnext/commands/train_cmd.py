"""``bnext train``: train from a YAML recipe with flag and ``--set`` overrides (torchrun for many GPUs)."""

from __future__ import annotations

import argparse
import json

from bnext.config import add_set_argument

FLAG_KEYS = {
    "model": "model.name",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "subset": "data.subset",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "output": "output",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="a YAML file or a shipped recipe name such as imagenet/bnext_tiny (`bnext recipes` lists them)"
    )
    add_set_argument(parser, "override a config key, e.g. --set train.lr=5e-4 (repeatable)")
    parser.add_argument("--model", help="registered model name (model.name)")
    parser.add_argument("--dataset", help="imagenet | cifar10 | cifar100 | fashion-mnist | folder | synthetic")
    parser.add_argument("--data-dir", help="dataset root (data.data_dir)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size, split over DDP ranks")
    parser.add_argument("--subset", type=int, help="train on the first N training images only")
    parser.add_argument("--output", help="run folder: checkpoints, metrics.jsonl, curves.png")
    parser.add_argument("--resume", help="checkpoint (OUTPUT/last.pt) to continue exactly from")


def config_from_args(args: argparse.Namespace) -> dict:
    from bnext.config import load_config

    overrides = [
        f"{key}={json.dumps(getattr(args, flag))}" for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None
    ]
    return load_config(args.config, overrides + list(args.overrides))


def run(args: argparse.Namespace) -> int:
    from bnext.train import Trainer
    from bnext.train.distributed import cleanup

    config = config_from_args(args)
    trainer = Trainer(config)
    try:
        if args.resume:
            trainer.resume(args.resume)
        record = trainer.fit()
    finally:
        cleanup(trainer.info)
    if trainer.info.is_main:
        out = trainer.output
        print(
            f"done: val top-1 {record.get('val_top1', float('nan')):.2f}% "
            f"(best {trainer.best_top1:.2f}%) after {config['train']['epochs']} epochs"
        )
        print(f"checkpoint: {out / 'last.pt'} (best: {out / 'best.pt'})")
        print(f"metrics:    {out / 'metrics.jsonl'}\ncurves:     {out / 'curves.png'}")
    return 0
