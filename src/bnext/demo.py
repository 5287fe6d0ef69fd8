"""The main job (``make demo``): a short BNext run on Fashion-MNIST with knowledge distillation.

1. Train (or reuse) a small full-precision teacher (``configs/fashion_mnist/teacher.yaml``).
2. Distill the BNext student from it (``configs/fashion_mnist/default.yaml``).
3. Export it as a packed 1-bit ``.bnx`` model, check the packed runtime's test accuracy,
   and time it against PyTorch fp32 eval of the same model.
4. Report test accuracy, where the checkpoint / metrics / curves are, the model's
   cost, size and speed, and write ``benchmarks/results/demo_fashion_mnist.json``. The
   accuracy of the same student without KD is quoted from the KD ablation benchmark
   (training it here too would double the demo's ten minutes).

    python -m bnext.demo [--output runs/demo] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bnext.benchmarking import write_result
from bnext.checkpoint import CheckpointError, read_checkpoint
from bnext.config import add_set_argument, load_config
from bnext.train import Trainer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "fashion_mnist"


def _usable(path: Path, epochs: int) -> bool:
    """A finished teacher run at ``path`` (a damaged or unfinished one is retrained)."""
    try:
        return read_checkpoint(path).get("epoch") == epochs
    except CheckpointError:
        return False


def train_teacher(output: Path, overrides: list[str]) -> tuple[Path, dict]:
    config = load_config(CONFIGS / "teacher.yaml", [f"output={output}", *overrides])
    last = output / "last.pt"
    if _usable(last, config["train"]["epochs"]):
        payload = read_checkpoint(last)
        print(f"teacher: reusing {last} (val top-1 {payload['best_top1']:.2f}%)")
        return last, {"reused": True, "val_top1": payload["best_top1"], "seconds": 0.0}
    start = time.perf_counter()
    record = Trainer(config).fit()
    seconds = time.perf_counter() - start
    print(f"teacher: {config['model']['name']} val top-1 {record['val_top1']:.2f}% in {seconds:.0f} s")
    return last, {"reused": False, "val_top1": record["val_top1"], "seconds": seconds}


def train_student(output: Path, teacher: Path, overrides: list[str]) -> tuple[Trainer, dict, float]:
    config = load_config(CONFIGS / "default.yaml", [f"output={output}", f"distill.strong={teacher}", *overrides])
    start = time.perf_counter()
    trainer = Trainer(config)
    record = trainer.fit()
    return trainer, record, time.perf_counter() - start


def deploy_student(trainer: Trainer, checkpoint: Path) -> dict:
    """Export the student, evaluate the packed model on the test set, and time it against PyTorch fp32."""
    from bnext.deploy import export_checkpoint, load
    from bnext.deploy.bench import run_benchmark
    from bnext.train import evaluate

    report = export_checkpoint(checkpoint, checkpoint.with_name("model.bnx"))
    packed_top1 = evaluate(load(report.path), trainer.data.val)["top1"]
    model = trainer.model.cpu().eval()
    speed = run_benchmark(
        model,
        trainer.config["model"]["name"],
        {"num_classes": trainer.data.num_classes, **trainer.config["model"]["kwargs"]},
        input_size=trainer.data.image_size,
        batches=[1, 64],
        thread_counts=[torch.get_num_threads()],
        reps=15,
        layers=False,
    )
    return {
        "file": str(report.path),
        "bytes": report.bytes,
        "fp32_weights_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "checkpoint_bytes": report.checkpoint_bytes,
        "test_top1": packed_top1,
        "speed": speed["end_to_end"],
    }


def _recorded_without_kd() -> tuple[float, float, int] | None:
    """(cross-entropy top-1, standard-KD top-1, epochs) of the KD ablation benchmark, if recorded."""
    path = REPO / "benchmarks" / "results" / "kd_ablation.json"
    try:
        data = json.loads(path.read_text())
        students = data["students"]
        return students["a_cross_entropy"]["test_top1"], students["b_kd_lowest_kc"]["test_top1"], data["student_epochs"]
    except (OSError, KeyError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fashion-MNIST BNext demo with knowledge distillation")
    parser.add_argument("--output", default="runs/demo")
    add_set_argument(parser, "override a key of the student recipe")
    parser.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "demo_fashion_mnist.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.output)
    started = time.perf_counter()
    teacher_path, teacher = train_teacher(out / "teacher", [])
    trainer, record, seconds = train_student(out / "student", teacher_path, args.overrides)

    from bnext.analysis import profile_model

    cost = profile_model(trainer.model.cpu(), trainer.data.image_size)
    deployed = deploy_student(trainer, out / "student" / "last.pt")
    total = time.perf_counter() - started
    summary = {
        "teacher": teacher,
        "student": {
            "model": trainer.config["model"],
            "epochs": trainer.config["train"]["epochs"],
            "test_top1": record["val_top1"],
            "test_top5": record["val_top5"],
            "final_temperature": record["temperature"],
            "seconds": seconds,
            "params_binary": cost.params_binary,
            "params_fp": cost.params_fp,
            "size_mib": cost.size_mib,
            "bops": cost.bops,
            "ops": cost.ops,
        },
        "packed": deployed,
        "total_seconds": total,
    }
    write_result(args.result, summary)
    student = out / "student"
    print()
    print(
        f"BNext student (KD from the fp teacher): test top-1 {record['val_top1']:.2f}%  "
        f"top-5 {record['val_top5']:.2f}%  (teacher {teacher['val_top1']:.2f}%)"
    )
    recorded = _recorded_without_kd()
    if recorded is not None:
        without_kd, with_kd, epochs = recorded
        print(
            f"without KD (this recipe, cross-entropy, {epochs} epochs, benchmarks/results/kd_ablation.json): "
            f"test top-1 {without_kd:.2f}% (with KD there: {with_kd:.2f}%)"
        )
    print(
        f"binary weights: {cost.params_binary:,} at 1 bit; size {cost.size_mib:.2f} MiB; "
        f"OPs {cost.ops:.3e}; total time {total / 60:.1f} min"
    )
    mib = 2**20
    print(
        f"packed 1-bit model: {deployed['file']} {deployed['bytes'] / mib:.2f} MiB (fp32 weights "
        f"{deployed['fp32_weights_bytes'] / mib:.2f} MiB, training checkpoint {deployed['checkpoint_bytes'] / mib:.1f} "
        f"MiB); its test top-1 {deployed['test_top1']:.2f}% (PyTorch eval {record['val_top1']:.2f}%)"
    )
    for row in deployed["speed"]:
        print(
            f"speed, batch {row['batch']}, {row['threads']} threads, {trainer.data.image_size} px: PyTorch fp32 "
            f"{row['torch_fp32_ms']:.2f} ms, packed {row['packed_ms']:.2f} ms ({row['speedup']:.1f}x)"
        )
    print(
        f"checkpoint: {student / 'last.pt'}\nmetrics:    {student / 'metrics.jsonl'}\n"
        f"curves:     {student / 'curves.png'}\nsummary:    {args.result}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
