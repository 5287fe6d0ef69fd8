"""KD ablation on Fashion-MNIST (paper Table 5 analog): one BNext student, four ways of teaching it.

(a) cross-entropy only, (b) standard KD from the lowest-KC teacher, (c) gap-sensitive
ensemble of the two lowest-KC teachers, (d) that ensemble with knowledge boosting
(the most accurate teacher as the strong one, the others as consecutive assistants
in increasing KC order). Teachers are full-precision ResNet-18s of three widths,
trained here (finished teacher runs in the output folder are reused); their KC uses
their measured test accuracy. The student recipe is the fashion_mnist/default recipe
with --epochs. Writes results/kd_ablation.json.

    python benchmarks/kd_ablation.py [--output runs/kd_ablation] [--epochs 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bnext.config import RECIPES, load_config
from bnext.distill import knowledge_complexity
from bnext.train import Trainer

try:
    from benchmarks.common import finished_run, write_result
except ImportError:
    from common import finished_run, write_result

CONFIGS = RECIPES / "fashion_mnist"
TEACHER_WIDTHS = {"fp_w0.25": 0.25, "fp_w0.5": 0.5, "fp_w1.0": 1.0}


def train(config_path: Path, overrides: list[str]) -> tuple[Trainer, dict, float]:
    start = time.perf_counter()
    trainer = Trainer(load_config(config_path, overrides))
    record = trainer.fit()
    return trainer, record, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/kd_ablation")
    parser.add_argument("--epochs", type=int, default=6, help="student epochs")
    args = parser.parse_args()
    out = Path(args.output)

    teachers = {}
    for name, width in TEACHER_WIDTHS.items():
        reused = finished_run(out / name)
        if reused is not None:  # a teacher from an earlier (interrupted) run of this script
            model, record = reused
            seconds = None
        else:
            trainer, record, seconds = train(
                CONFIGS / "teacher.yaml", [f"output={out / name}", f"model.kwargs.width_multiplier={width}"]
            )
            model = trainer.model
        params = sum(p.numel() for p in model.parameters())
        accuracy = record["val_top1"] / 100
        teachers[name] = {
            "path": str(out / name / "last.pt"),
            "params": params,
            "test_top1": record["val_top1"],
            "kc": knowledge_complexity(params, accuracy),
            "seconds": seconds,
        }
        print(name, teachers[name], flush=True)
    by_kc = sorted(teachers, key=lambda n: teachers[n]["kc"])
    most_accurate = max(teachers, key=lambda n: teachers[n]["test_top1"])
    low_pair = by_kc[:2]
    pair_strong = max(low_pair, key=lambda n: teachers[n]["test_top1"])
    pair_assistant = next(n for n in low_pair if n != pair_strong)
    path = {n: teachers[n]["path"] for n in teachers}
    settings = {
        "a_cross_entropy": ["distill.mode=none"],
        "b_kd_lowest_kc": ["distill.mode=kd", f"distill.strong={path[by_kc[0]]}"],
        "c_gap_sensitive_ensemble": [
            "distill.mode=gap_sensitive",
            f"distill.strong={path[pair_strong]}",
            f"distill.assistants=[{path[pair_assistant]}]",
        ],
        "d_ensemble_with_boosting": [
            "distill.mode=gap_sensitive",
            f"distill.strong={path[most_accurate]}",
            "distill.assistants=[" + ", ".join(path[n] for n in by_kc if n != most_accurate) + "]",
        ],
    }
    students = {}
    for name, overrides in settings.items():
        _, record, seconds = train(
            CONFIGS / "default.yaml", [f"output={out / name}", f"train.epochs={args.epochs}", *overrides]
        )
        students[name] = {
            "overrides": overrides,
            "test_top1": record["val_top1"],
            "test_top5": record["val_top5"],
            "train_top1_last_epoch": record["train_top1"],
            "seconds": seconds,
        }
        print(name, students[name], flush=True)
    path_out = write_result(
        "kd_ablation",
        {
            "student_recipe": "fashion_mnist/default",
            "student_epochs": args.epochs,
            "teachers": teachers,
            "teachers_by_kc": by_kc,
            "students": students,
        },
    )
    print("wrote", path_out)


if __name__ == "__main__":
    main()
