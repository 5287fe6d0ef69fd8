"""Whole jobs that commands, the demo and benchmarks share: evaluate, quantize, export a checkpoint; rank teachers.

This sits at the top of the house (it uses loading, data, quant and train); commands only
parse arguments and print what these return.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnext.atomic import check_output_path
from bnext.card import card_from_payload, check_class_count
from bnext.checkpoint import save_checkpoint
from bnext.config import load_config
from bnext.data import DataBundle, build_data
from bnext.deploy import export_checkpoint, load
from bnext.deploy.bench import run_benchmark
from bnext.distill import KNOWN_TEACHERS, load_teacher, rank_by_kc
from bnext.distill.teachers import architecture_params
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.quant import calibrate, finetune_quantized, parse_quant_config, quantize_model
from bnext.train import evaluate

TABLE7_CONFIGS = ("32/32", "8/8-8/8-8/8-8/8", "8/8-4/8-4/8-8/8", "8/8-4/8-4/4-8/8", "8/8-4/4-4/4-8/8")
"""The I-S-E-O configurations of paper Table 7 (32/32 = no quantization)."""


def checkpoint_data(payload: dict[str, Any], overrides: Iterable[str] = ()) -> DataBundle:
    """The data a checkpoint was trained on (its stored config), whole training set, plus ``overrides``.

    Refuses a dataset whose class count differs from the checkpoint's card.
    """
    config = load_config(None, ["data.subset=null", *overrides], base=payload.get("config"))
    data = build_data(config)
    check_class_count(
        card_from_payload(payload).num_classes,
        data.num_classes,
        f"dataset {config['data']['dataset']!r}",
        "the checkpoint predicts another class count; use the dataset it was trained on",
    )
    return data


def evaluate_checkpoint(path: str | Path, overrides: Iterable[str] = (), progress: bool = True) -> dict[str, float]:
    """Top-1 / top-5 / loss of a checkpoint on the validation split of its dataset (or the one overridden)."""
    model, payload = model_from_checkpoint(path)
    return evaluate(model, checkpoint_data(payload, overrides).val, progress=progress)


def quantize_and_evaluate(
    model: nn.Module,
    data: DataBundle,
    config: str,
    calibration_batches: int = 8,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-7,
) -> tuple[nn.Module, float, float]:
    """Quantize a copy of ``model`` per ``config``, calibrate (and fine-tune) it; return (model, top-1, top-5)."""
    model = copy.deepcopy(model)
    if config != "32/32":
        quantize_model(model, config)
        batches = (x for _, (x, _, _) in zip(range(calibration_batches), data.train.epoch(0), strict=False))
        calibrate(model, batches)
        if finetune_epochs:
            finetune_quantized(model, data.train, finetune_epochs, finetune_lr)
    result = evaluate(model, data.val)
    return model, result["top1"], result["top5"]


def quantize_checkpoint(
    path: str | Path,
    configs: Sequence[str],
    *,
    calibration_batches: int = 8,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-7,
    output: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """PTQ of a checkpoint for each I-S-E-O config: a row of test top-1 / top-5 per config.

    With ``output`` and a single config, the quantized model is saved as ``output/quantized.pt``
    (its card and training config kept, ``quant_config`` added).
    """
    for text in configs:
        if text != "32/32":
            parse_quant_config(text)  # fail on a malformed config before any work
    target = None  # where the quantized checkpoint goes, refused now if writing it would lose a file
    if output is not None and len(configs) == 1:
        target = check_output_path(Path(output) / "quantized.pt", path)
    model, payload = model_from_checkpoint(path)
    data = checkpoint_data(payload, ["data.augment=none", *overrides])
    rows = []
    for text in configs:
        quantized, top1, top5 = quantize_and_evaluate(
            model, data, text, calibration_batches, finetune_epochs, finetune_lr
        )
        rows.append({"config": text, "top1": top1, "top5": top5, "model": quantized})
        if target is not None:
            saved = save_checkpoint(
                quantized, target, card=card_from_payload(payload), quant_config=text,
                kind="quantized", best_top1=top1, config=payload.get("config"),
            )  # fmt: skip
            rows[-1]["checkpoint"] = str(saved)
    return rows


def export_and_check(checkpoint: str | Path, data: DataBundle, batches: Sequence[int] = (1, 64)) -> dict[str, Any]:
    """Export a checkpoint to ``model.bnx`` beside it, test the packed model on ``data.val``, time it vs PyTorch.

    Returns the file, its size next to the fp32 weights and the checkpoint, the kernel path, the packed
    model's test top-1 and the end-to-end speed rows (current thread count, CPU).
    """
    checkpoint = Path(checkpoint)
    report = export_checkpoint(checkpoint, checkpoint.with_name("model.bnx"))
    packed_top1 = evaluate(load(report.path), data.val)["top1"]
    model, payload = model_from_checkpoint(checkpoint)
    card = card_from_payload(payload)
    speed = run_benchmark(
        model.eval(), card.model, card.create_kwargs(), input_size=data.image_size, batches=list(batches),
        thread_counts=[torch.get_num_threads()], reps=15, layers=False,
    )  # fmt: skip
    return {
        "file": str(report.path),
        "bytes": report.bytes,
        "fp32_weights_bytes": report.fp32_weights_bytes,
        "checkpoint_bytes": report.checkpoint_bytes,
        "kernel_path": speed["kernel_path"],
        "test_top1": packed_top1,
        "speed": speed["end_to_end"],
    }


def rank_teachers(
    specs: Sequence[str],
    accuracies: dict[str, float] | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 64,
) -> list[tuple[str, int, float, float]]:
    """Candidate teachers sorted by Knowledge Complexity: (name, params, top-1 fraction, KC) rows.

    A candidate's accuracy comes from ``accuracies``, else paper Table 8's known teachers, else (with
    ``dataset``) it is measured on that dataset's validation split.
    """
    given = dict(accuracies or {})
    candidates = {}
    for spec in specs:
        name = spec.rpartition(":")[2]
        if name in given or (name in KNOWN_TEACHERS and not dataset):
            params = KNOWN_TEACHERS[name].params if name in KNOWN_TEACHERS else architecture_params(spec)
            if params is None:
                raise UserError(f"cannot count the parameters of {spec!r}: not a torchvision or timm model")
            candidates[name] = (
                params,
                given.get(name, KNOWN_TEACHERS[name].accuracy if name in KNOWN_TEACHERS else None),
            )
        elif dataset:
            teacher = load_teacher(spec)
            config = load_config(
                None, [f"data.dataset={dataset}", "data.augment=none", f"train.batch_size={batch_size}"]
            )
            config["data"]["data_dir"] = data_dir
            data = build_data(config)
            top1 = evaluate(teacher.on_student_input(data.mean, data.std), data.val, progress=True)["top1"]
            candidates[name] = (teacher.params, top1 / 100)
        else:
            raise UserError(f"no accuracy for {spec!r}: pass --accuracy {name}=FRACTION or --dataset to measure it")
    return rank_by_kc(candidates)
