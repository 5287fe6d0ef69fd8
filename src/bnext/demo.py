"""The main job (``make demo``): a short BNext run on Fashion-MNIST with knowledge distillation.

1. Train (or reuse) a small full-precision teacher (recipe ``fashion_mnist/teacher``).
2. Distill the BNext student from it (recipe ``fashion_mnist/default``).
3. Export it as a packed 1-bit ``.bnx`` model, check the packed runtime's test accuracy,
   and time it against PyTorch fp32 eval of the same model.
4. Report test accuracy, where the checkpoint / metrics / curves are, the model's
   cost, size and speed, and write the summary to ``OUTPUT/summary.json``. Only
   ``--record FILE`` (what ``make bench`` passes) writes a result file elsewhere, such
   as the tracked ``benchmarks/results/demo_fashion_mnist.json``.

Runs on the GPU when there is one, else on the CPU; autocast only where the hardware
computes bf16 natively (see ``bnext.hardware``).

    python -m bnext.demo [--output runs/demo] [--set key=value ...] [--record FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bnext.analysis import profile_model
from bnext.benchmarking import write_result
from bnext.card import card_from_payload
from bnext.checkpoint import CheckpointError, read_checkpoint
from bnext.config import add_set_argument, load_config
from bnext.hardware import cpu_model, isa_summary
from bnext.train import Trainer
from bnext.train.distributed import init_distributed
from bnext.workflows import export_and_check


def _finished_teacher(path: Path, config: dict) -> dict | None:
    """The checkpoint of a finished teacher run of this recipe at ``path``; None for a damaged, unfinished or
    other one (which is retrained)."""
    try:
        payload = read_checkpoint(path)
    except CheckpointError:
        return None
    card = card_from_payload(payload)
    same_model = card is not None and (card.model, card.kwargs) == (config["model"]["name"], config["model"]["kwargs"])
    return payload if same_model and payload.get("epoch") == config["train"]["epochs"] else None


def describe(config: dict) -> str:
    """The model and schedule of a recipe in words, e.g. ``resnet18_fp (width 0.25), 3 epochs``."""
    width = config["model"]["kwargs"].get("width_multiplier")
    shape = f" (width {width})" if width else ""
    train = config["train"]
    return f"{config['model']['name']}{shape}, {train['epochs']} epochs of batch {train['batch_size']}"


def train_teacher(output: Path, overrides: list[str]) -> tuple[Path, dict]:
    config = load_config("fashion_mnist/teacher", [f"output={output}", *overrides])
    phase(1, f"fp teacher on Fashion-MNIST: {describe(config)}")
    last = output / "last.pt"
    payload = _finished_teacher(last, config)
    if payload is not None:
        print(f"teacher: reusing {last} (val top-1 {payload['best_top1']:.2f}%)")
        return last, {"reused": True, "val_top1": payload["best_top1"], "seconds": 0.0}
    start = time.perf_counter()
    record = Trainer(config).fit()
    seconds = time.perf_counter() - start
    print(f"teacher: {config['model']['name']} val top-1 {record['val_top1']:.2f}% in {seconds:.0f} s")
    return last, {"reused": False, "val_top1": record["val_top1"], "seconds": seconds}


def train_student(output: Path, teacher: Path, overrides: list[str]) -> tuple[Trainer, dict, float]:
    config = load_config("fashion_mnist/default", [f"output={output}", f"distill.strong={teacher}", *overrides])
    phase(2, f"BNext student distilled from the teacher: {describe(config)}")
    start = time.perf_counter()
    trainer = Trainer(config)
    record = trainer.fit()
    return trainer, record, time.perf_counter() - start


def describe_machine(device: torch.device) -> str:
    """Where the demo runs, in words: the GPU's name, or the CPU model with its relevant ISA flags."""
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    flags = [flag for flag, present in isa_summary().items() if present]
    return f"CPU {cpu_model()} ({', '.join(flags) or 'no AVX2'}; {torch.get_num_threads()} threads)"


def phase(number: int, text: str) -> None:
    print(f"\n[{number}/4] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fashion-MNIST BNext demo with knowledge distillation",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", default="runs/demo", help="run folder (teacher/, student/, summary.json)")
    add_set_argument(parser, "override a key of the student recipe")
    add_set_argument(parser, "override a key of the teacher recipe", "--teacher-set", "teacher_overrides")
    parser.add_argument("--record", metavar="FILE", help="also write the summary to FILE (benchmarks: make bench)")
    args = parser.parse_args(argv)
    out = Path(args.output)
    started = time.perf_counter()
    device = init_distributed().device
    print(f"bnext demo on {describe_machine(device)}", flush=True)
    teacher_path, teacher = train_teacher(out / "teacher", args.teacher_overrides)
    trainer, record, seconds = train_student(out / "student", teacher_path, args.overrides)
    cost = profile_model(trainer.model.cpu(), trainer.data.image_size)
    phase(3, "export to a packed 1-bit .bnx file, test accuracy and speed of the packed model (CPU)")
    deployed = export_and_check(out / "student" / "last.pt", trainer.data, batches=[1, 64])
    total = time.perf_counter() - started
    summary = {
        "device": describe_machine(device),
        "teacher": teacher,
        "student": {
            "model": trainer.config["model"],
            "epochs": trainer.config["train"]["epochs"],
            "test_top1": record["val_top1"],
            "test_top5": record["val_top5"],
            "final_temperature": record["temperature"],
            "seconds": seconds,
            "images_per_s": record["images_per_s"],
            "params_binary": cost.params_binary,
            "params_fp": cost.params_fp,
            "size_mib": cost.size_mib,
            "bops": cost.bops,
            "ops": cost.ops,
        },
        "packed": deployed,
        "total_seconds": total,
    }
    summary_path = write_result(out / "summary.json", summary)
    if args.record:
        write_result(args.record, summary)
    student = out / "student"
    phase(4, "results")
    print(
        f"BNext student (KD from the fp teacher): test top-1 {record['val_top1']:.2f}%  "
        f"top-5 {record['val_top5']:.2f}%  (teacher {teacher['val_top1']:.2f}%)"
    )
    print(
        f"binary weights: {cost.params_binary:,} at 1 bit; size {cost.size_mib:.2f} MiB; "
        f"OPs {cost.ops:.3e}; total time {total / 60:.1f} min"
    )
    mib = 2**20
    print(
        f"packed 1-bit model: {deployed['file']} {deployed['bytes'] / mib:.2f} MiB, "
        f"{deployed['fp32_weights_bytes'] / deployed['bytes']:.1f}x smaller than its fp32 weights "
        f"({deployed['fp32_weights_bytes'] / mib:.2f} MiB); its test top-1 {deployed['test_top1']:.2f}% "
        f"(PyTorch eval {record['val_top1']:.2f}%)"
    )
    for row in deployed["speed"]:
        print(
            f"speed on {cpu_model()} ({deployed['kernel_path']} kernels), batch {row['batch']}, {row['threads']} "
            f"threads, {trainer.data.image_size} px: PyTorch fp32 {row['torch_fp32_ms']:.2f} ms, packed "
            f"{row['packed_ms']:.2f} ms ({row['speedup']:.1f}x; at this toy size fp ops and call overheads dominate)"
        )
    print(
        f"checkpoint: {student / 'last.pt'}\nmetrics:    {student / 'metrics.jsonl'}\n"
        f"curves:     {student / 'curves.png'}\nsummary:    {summary_path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
